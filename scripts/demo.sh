#!/usr/bin/env bash
# The demo: Fashion-MNIST, offline, end to end on 2 CPU cores in a few minutes (the training
# command is planned to 90 s, everything included).
# Writes data/fashion-mnist-demo (a subset of the official training images, all 10,000
# official test images) and trains runs/fashion-demo on it.
set -euo pipefail
DATA=data/fashion-mnist-demo
RUN_NAME=fashion-demo
PER_CLASS=${DEMO_TRAIN_PER_CLASS:-300}

start=$(date +%s)
if [ ! -d "$DATA" ]; then
  echo "== writing Fashion-MNIST ($PER_CLASS training images per class, the official test set) to $DATA"
  imgclf datasets fashion-mnist "$DATA" --train-per-class "$PER_CLASS"
fi
imgclf inspect "$DATA" | head -n 20

echo "== training (efficientnet_lite0, ImageNet weights, two phases, planned to the default budget, which grows with the data)"
rm -rf "runs/$RUN_NAME"
imgclf train "$DATA" --name "$RUN_NAME" --quiet

echo "== predicting a few official test images"
imgclf predict "runs/$RUN_NAME" "$DATA"/test/ankle_boot/$(ls "$DATA"/test/ankle_boot | head -n 1) \
  "$DATA"/test/bag/$(ls "$DATA"/test/bag | head -n 1) "$DATA"/test/shirt/$(ls "$DATA"/test/shirt | head -n 1) --top-k 3

echo "== exporting full-integer TFLite, judged by the accuracy it loses on the test split"
imgclf export "runs/$RUN_NAME" --format tflite-int8 --quiet

end=$(date +%s)
echo "== demo finished in $(( end - start )) s"
echo "report: runs/$RUN_NAME/report.html   (open it in a browser)"
