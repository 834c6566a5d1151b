"""Run configuration: frozen dataclasses, loaded from YAML, overridden by flags, validated once.

A config is built once (defaults <- YAML file <- command-line overrides), validated, written to
the run directory before training starts, and never changed afterwards.

Example:
    >>> cfg = load_config(None, {"data.path": "photos", "train.epochs": "3"})
    >>> cfg.train.epochs
    3
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from imgclf.errors import ImgclfError

FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")
SCHEDULES = ("auto", "plateau", "cosine", "constant")
KEEPS = ("auto", "best", "last")
CACHES = ("memory", "disk", "none")
CLASS_WEIGHTS = ("none", "balanced")
RUNTIMES = ("auto", "tflite", "tf")
TEST_TIME_FLIPS = ("auto", "on", "off")


@dataclass(frozen=True)
class AugmentConfig:
    """Train-only augmentation; factors follow Keras' preprocessing layers."""

    rotation: float = 0.05  # fraction of a full turn, both ways (0.05 = +-18 degrees)
    flip: str = "horizontal"
    zoom: float = 0.1  # fraction of the image size, in or out
    translation: float = 0.0  # fraction of the image size
    contrast: float = 0.0
    brightness: float = 0.0  # fraction of the 0-255 range


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are split, sized and batched."""

    path: str = ""
    val_fraction: float = 0.1  # used only when the data has no val/ split of its own
    test_fraction: float = 0.1  # used only when the data has no test/ split of its own
    image_size: int = 0  # 0: chosen automatically from the backbone and the images
    batch_size: int = 32
    cache: str = "memory"  # decoded, resized images: memory, disk (run_dir/cache), none
    max_pixels: int = 64_000_000  # larger images are refused as decompression bombs
    strict: bool = False  # refuse to train when a val/test image is a copy of a train image (imgclf.health)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class ModelConfig:
    """The pretrained base and the classification head put on it."""

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"  # imagenet | none | a path to a weights file
    dropout: float = 0.2
    hidden_units: int = 0  # 0: no hidden Dense layer in the head


@dataclass(frozen=True)
class TrainConfig:
    """The two phases: head on a frozen base, then fine-tuning of the top of the base."""

    # Empty (None/0/auto) values are planned to fit the budget (training.planner); given ones are kept.
    budget_s: float = 0.0  # seconds for the whole run; 0: the default budget (planner.default_budget)
    epochs: int | None = None  # phase 1 (head only), at most; early stopping may end it sooner
    fine_tune_epochs: int | None = None  # phase 2; 0 skips fine-tuning
    fine_tune_layers: int = 0  # unfreeze the top N layers of the base ...
    fine_tune_blocks: int = 0  # ... or the top K blocks; both 0: planned
    lr: float = 1e-3
    fine_tune_lr: float = 3e-4  # 1e-4 before: 3e-4 helped validation on four datasets (RESULTS.md)
    label_smoothing: float = 0.0
    mixup: float = 0.0  # mixup's Beta(a, a) on cached features and activations (training.views.ViewBatches); 0: off
    patience: int | None = None  # on validation loss; None: 3, or planned: never before the (grown) epochs
    schedule: str = "auto"  # auto: cosine when planned, else plateau
    # the weights the run ends with: best (lowest validation loss), last (the last epoch's), or
    # auto: last under a cosine schedule (it ends at its floor), best otherwise (keep_of)
    keep: str = "auto"
    class_weights: str = "none"
    top_k: int = 5
    test_time_flip: str = "off"  # average with the mirror image's prediction: off, on, auto (flip_considered)
    # Fast path: the frozen part runs once per image and view, cached; only the rest trains on the
    # cache. False: the plain path (the whole network on fresh augmentations every epoch).
    feature_cache: bool = True
    views: int = 0  # cached views per training image (the first unaugmented); 0: by data size (training.views.choose_views)
    cache_memory_mb: int = 1024  # decoded images and caches above this go to disk (run_dir/cache)
    runtime: str = "auto"  # frozen forward pass: tflite (LiteRT + XNNPACK), tf, or auto


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; saved as config.yaml in the run directory."""

    name: str = ""  # empty: derived from the data folder's name
    seed: int = 42
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def keep_of(keep: str, schedule: str) -> str:
    """train.keep resolved against the schedule: "best" or "last". Under a cosine schedule the last
    epoch's weights helped validation on four datasets (RESULTS.md, 2026-12-06); under plateau or
    constant rates the last epoch may be ``patience`` epochs past the best.

    Example:
        >>> keep_of("auto", "cosine"), keep_of("auto", "plateau")
        ('last', 'best')
    """
    return keep if keep != "auto" else ("last" if schedule == "cosine" else "best")


def flip_considered(test_time_flip: str, augment_flip: str) -> bool:
    """Whether the test-time flip may be on: train.test_time_flip is on, or auto while training flips
    horizontally (a mirror image has the same class); auto then chooses on validation (choose_flip).

    Example:
        >>> flip_considered("auto", "horizontal"), flip_considered("auto", "none")
        (True, False)
    """
    return test_time_flip == "on" or (test_time_flip == "auto" and "horizontal" in augment_flip)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Build a validated RunConfig from defaults, an optional YAML file and dotted overrides.

    Args:
        path: a YAML file with any of the sections ``data``, ``model``, ``train`` and the
            top-level keys ``name``, ``seed``, ``runs_dir``; None for defaults only.
        overrides: ``{"train.epochs": 3, "data.image_size": "96"}``; values may be strings
            (parsed by the field's type) or already typed. None values are ignored.

    Returns:
        The frozen, validated RunConfig.

    Example:
        >>> load_config(None, {"model.backbone": "resnet50"}).model.backbone
        'resnet50'
    """
    tree: dict[str, Any] = {}
    if path is not None:
        tree = _read_yaml(Path(path))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ImgclfError(f"config: '{part}' must be a section, not a value")
        node[leaf] = value
    where = str(path) if path else "config"
    config = _build(RunConfig, tree, where, "")
    validate(config)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts, ready for YAML or JSON.

    Example:
        >>> config_to_dict(RunConfig())["train"]["epochs"]
        10
    """
    return dataclasses.asdict(config)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the config as YAML, atomically.

    Example:
        >>> save_config(RunConfig(), "/tmp/config.yaml")
    """
    from imgclf.files import write_text_atomic

    write_text_atomic(Path(path), yaml.safe_dump(config_to_dict(config), sort_keys=False))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImgclfError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise ImgclfError(f"{path}: not valid YAML{where}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ImgclfError(f"{path}: the config must be a mapping of sections, not {type(tree).__name__}")
    return tree


def _build(cls: type, tree: Mapping[str, Any], where: str, prefix: str) -> Any:
    if not isinstance(tree, Mapping):
        raise ImgclfError(f"{where}: '{prefix.rstrip('.')}' must be a section of keys")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - set(fields))
    if unknown:
        valid = ", ".join(prefix + name for name in fields)
        raise ImgclfError(f"{where}: unknown key '{prefix}{unknown[0]}' (valid: {valid})")
    kwargs = {}
    for name, value in tree.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, where, f"{prefix}{name}.")
        else:
            kwargs[name] = _parse(value, kind, f"{where}: {prefix}{name}")
    return cls(**kwargs)


def _parse(value: Any, kind: Any, what: str) -> Any:
    """Parse a YAML or command-line value by the field's declared type; never eval()."""
    if isinstance(kind, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None  # "null" in YAML: planned
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ImgclfError(f"{what}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ImgclfError(f"{what}: expected a whole number, got {value!r}")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip())
        except ValueError:
            raise ImgclfError(f"{what}: expected a whole number, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ImgclfError(f"{what}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ImgclfError(f"{what}: expected a number, got {value!r}") from None
    if kind is str:
        if isinstance(value, (dict, list)):
            raise ImgclfError(f"{what}: expected a single value, got {type(value).__name__}")
        return "" if value is None else str(value)
    raise TypeError(f"unsupported config type {kind!r}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ImgclfError(f"config: {message}")


def validate(config: RunConfig) -> None:
    """Reject values that cannot work, with a message naming the key.

    Backbone-dependent checks (image size, fine-tune depth) happen where the backbone is built.

    Example:
        >>> validate(RunConfig())
    """
    d, a, m, t = config.data, config.data.augment, config.model, config.train
    for key, value, choices in (("data.cache", d.cache, CACHES), ("data.augment.flip", a.flip, FLIPS),
                                ("train.schedule", t.schedule, SCHEDULES), ("train.keep", t.keep, KEEPS),
                                ("train.class_weights", t.class_weights, CLASS_WEIGHTS),
                                ("train.test_time_flip", t.test_time_flip, TEST_TIME_FLIPS),
                                ("train.runtime", t.runtime, RUNTIMES)):
        _check(value in choices, f"{key} must be one of {', '.join(choices)}, got '{value}'")
    _check(0.0 <= d.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    _check(0.0 <= d.test_fraction < 1.0, f"data.test_fraction must be in [0, 1), got {d.test_fraction}")
    _check(d.val_fraction + d.test_fraction < 1.0, "data.val_fraction + data.test_fraction must be below 1")
    _check(d.image_size == 0 or 16 <= d.image_size <= 1024, f"data.image_size must be 0 (auto) or 16-1024, got {d.image_size}")
    _check(d.batch_size >= 1, f"data.batch_size must be at least 1, got {d.batch_size}")
    _check(d.max_pixels >= 1, f"data.max_pixels must be positive, got {d.max_pixels}")
    _check(0.0 <= a.rotation <= 0.5, f"data.augment.rotation must be in [0, 0.5] turns, got {a.rotation}")
    for key in ("zoom", "translation", "contrast", "brightness"):
        value = getattr(a, key)
        _check(0.0 <= value < 1.0, f"data.augment.{key} must be in [0, 1), got {value}")
    _check(bool(m.backbone), "model.backbone must name a backbone (see `imgclf backbones`)")
    _check(0.0 <= m.dropout < 1.0, f"model.dropout must be in [0, 1), got {m.dropout}")
    _check(m.hidden_units >= 0, f"model.hidden_units must be 0 or more, got {m.hidden_units}")
    _check(t.epochs is None or t.epochs >= 1, f"train.epochs must be at least 1, got {t.epochs}")
    _check(t.fine_tune_epochs is None or t.fine_tune_epochs >= 0,
           f"train.fine_tune_epochs must be 0 or more, got {t.fine_tune_epochs}")
    _check(t.budget_s >= 0 and math.isfinite(t.budget_s), f"train.budget_s must be 0 (default) or more, got {t.budget_s}")
    _check(t.fine_tune_layers >= 0 and t.fine_tune_blocks >= 0, "train.fine_tune_layers/blocks must be 0 or more")
    _check(not (t.fine_tune_layers and t.fine_tune_blocks), "give train.fine_tune_layers or train.fine_tune_blocks, not both")
    _check(t.lr > 0 and t.fine_tune_lr > 0, "train.lr and train.fine_tune_lr must be positive")
    _check(0.0 <= t.label_smoothing < 1.0, f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    _check(t.mixup == 0 or (0 < t.mixup <= 1 and t.feature_cache), f"train.mixup must be 0 (off) or in (0, 1], on the feature cache, got {t.mixup}")
    _check(t.patience is None or t.patience >= 1, f"train.patience must be at least 1, got {t.patience}")
    _check(t.top_k >= 1, f"train.top_k must be at least 1, got {t.top_k}")
    _check(0 <= t.views <= 64, f"train.views must be 0 (automatic) or 1-64, got {t.views}")
    _check(t.cache_memory_mb >= 0, f"train.cache_memory_mb must be 0 or more, got {t.cache_memory_mb}")
