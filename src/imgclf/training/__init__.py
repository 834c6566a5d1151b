"""The training stage: build the network, run the two phases, and what hooks into them.

Owns: the network being trained and its backbone spec (``model``), the two-phase recipe and
class weights (``phases``), early stopping and schedules (``schedule``), the train step and fused Adam
(``steps``), the fast path's feature cache (``features``) and its cached views (``views``), per-epoch checkpoints
(``checkpoint``), history.csv and TensorBoard (``history``), and data-parallel training
(``distribute``). May import: ``imgclf.data``, ``imgclf.backbones``, ``imgclf.runtime``,
``imgclf.config``, ``imgclf.record``, ``imgclf.errors``, ``imgclf.files``. Importing this
package does not import TensorFlow; its modules do.

Example:
    >>> from imgclf.training.model import build_network
    >>> from imgclf.training.phases import EpochLog, PlainData, fit_two_phase
    >>> net = build_network("efficientnet_lite0", 3, 96)
    >>> rows = fit_two_phase(net, cfg.train, PlainData(net.model, train_ds, val_ds), EpochLog())
"""
