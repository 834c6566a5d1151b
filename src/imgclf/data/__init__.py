"""The data stage: image files -> a checked, split, reported Dataset -> arrays -> pipelines.

Owns: finding images in every layout ``train`` accepts (layouts), decoding one image file to
8-bit RGB (images), the seeded stratified split and the data report (dataset, report), decoded
and resized arrays (arrays), tf.data pipelines and augmentation (pipeline, augment), and
writing real datasets as class folders (datasets), and which slice of an image list each of N
processes takes (shards). May import: ``imgclf.config``,
``imgclf.errors``, ``imgclf.files``; nothing else of imgclf.

Example:
    >>> from imgclf import data
    >>> ds = data.load_dataset("photos", seed=42)
    >>> x = data.load_images(ds.paths["train"], 96)
    >>> batches = data.make_pipeline(x, ds.labels["train"], ds.num_classes, 32, shuffle=True)
"""
from imgclf.data.arrays import DiskImages, ResizedImages, load_images, map_threads
from imgclf.data.dataset import Dataset, load_dataset, stratified_take
from imgclf.data.images import IMAGE_EXTENSIONS, BadImage, read_image, resize
from imgclf.data.layouts import SPLITS
from imgclf.data.pipeline import EpochBatches, class_weights, epoch_batches, make_pipeline
from imgclf.data.report import DataReport

__all__ = ["DataReport", "Dataset", "load_dataset", "stratified_take", "load_images", "ResizedImages", "DiskImages",
           "map_threads", "make_pipeline", "epoch_batches", "EpochBatches", "class_weights", "read_image",
           "resize", "BadImage",
           "IMAGE_EXTENSIONS", "SPLITS"]
