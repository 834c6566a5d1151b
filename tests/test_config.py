import pytest
import yaml

from imgclf.config import RunConfig, config_to_dict, load_config, save_config
from imgclf.errors import ImgclfError


def test_defaults_are_valid_and_frozen():
    cfg = load_config()
    assert cfg == RunConfig()
    assert cfg.train.views == 0  # automatic: training.views.choose_views
    with pytest.raises(Exception):
        cfg.seed = 1


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\ntrain:\n  epochs: 4\n  lr: 0.01\ndata:\n  augment:\n    zoom: 0.3\n")
    cfg = load_config(path, {"train.epochs": "9", "data.image_size": 96, "model.backbone": None})
    assert (cfg.seed, cfg.train.epochs, cfg.train.lr, cfg.data.image_size) == (7, 9, 0.01, 96)
    assert cfg.data.augment.zoom == 0.3
    assert cfg.model.backbone == "efficientnet_lite0"  # None override ignored


def test_unknown_key_lists_valid_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epocs: 4\n")
    with pytest.raises(ImgclfError) as err:
        load_config(path)
    message = str(err.value)
    assert "train.epocs" in message and "train.epochs" in message and str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("override, fragment", [
    ({"train.epochs": "three"}, "whole number"),
    ({"train.epochs": 2.5}, "whole number"),
    ({"train.lr": "fast"}, "number"),
    ({"train.epochs": 0}, "train.epochs"),
    ({"data.val_fraction": 0.6, "data.test_fraction": 0.5}, "below 1"),
    ({"train.schedule": "linear"}, "plateau"),
    ({"train.keep": "first"}, "best, last"),
    ({"data.augment.flip": "diagonal"}, "horizontal"),
    ({"train.fine_tune_layers": 3, "train.fine_tune_blocks": 2}, "not both"),
    ({"data.image_size": 8}, "image_size"),
    ({"train.views": -1}, "0 \\(automatic\\) or 1-64"),
    ({"train.views": 65}, "train.views"),
    ({"train.mixup": -0.1}, "train.mixup must be 0"),
    ({"train.mixup": 2}, "train.mixup must be 0"),
    ({"train.mixup": 0.2, "train.feature_cache": False}, "on the feature cache"),
])
def test_bad_values_are_one_line_errors(override, fragment):
    with pytest.raises(ImgclfError, match=fragment) as err:
        load_config(None, override)
    assert "\n" not in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ImgclfError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ImgclfError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ImgclfError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, {"name": "x", "train.fine_tune_blocks": 2, "data.augment.rotation": 0.1})
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config_to_dict(cfg)


def test_keep_auto_keeps_the_last_epoch_only_under_a_cosine_schedule():
    from imgclf.config import keep_of
    assert keep_of("auto", "cosine") == "last"
    assert keep_of("auto", "plateau") == keep_of("auto", "constant") == "best"
    assert keep_of("best", "cosine") == "best" and keep_of("last", "plateau") == "last"
    assert load_config(None, {}).train.keep == "auto"
