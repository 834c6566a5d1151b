import subprocess
import sys

import pytest

from imgclf.cli import build_parser, main

SUBCOMMANDS = ["train", "evaluate", "predict", "explain", "inspect", "backbones", "datasets", "export", "serve"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_useful_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert f"imgclf {command}" in text and len(text) > 300


def test_top_level_help_lists_subcommands(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    assert all(c in text for c in SUBCOMMANDS)


def test_console_script_runs_without_importing_tensorflow_for_help():
    code = ("import sys; from imgclf.cli import main; "
            "import contextlib, io; f = io.StringIO()\n"
            "with contextlib.redirect_stdout(f):\n"
            "    main([])\n"
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_train_flags_reach_the_config():
    args = build_parser().parse_args(["train", "d", "--epochs", "3", "--fine-tune-blocks", "2"])
    assert (args.epochs, args.fine_tune_blocks, args.fine_tune_layers) == (3, 2, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "d", "--fine-tune-blocks", "2", "--fine-tune-layers", "4"])


def test_python_dash_m_imgclf_is_the_command_line():
    out = subprocess.run([sys.executable, "-m", "imgclf"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in SUBCOMMANDS)
    bad = subprocess.run([sys.executable, "-m", "imgclf", "evaluate", "/nonexistent/run"], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "/nonexistent/run" in bad.stderr


def _imgclf(*args, cwd=None):
    """`imgclf ARGS` as a user runs it: a new process, its real stderr (not pytest's capture)."""
    return subprocess.run([sys.executable, "-m", "imgclf", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp("data") / "colours"
    for name, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), colour).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("args, message", [
    (["train", "/no/such/folder"], "/no/such/folder: no such file or folder"),
    (["evaluate", "/no/such/run"], "/no/such/run: no such run directory"),
    (["export", "/no/such/run", "--format", "tflite"], "/no/such/run: no such run directory"),
    (["predict", "/no/such/run", "x.png"], "/no/such/run: no such run directory or model file"),
    (["train", "{data}", "--backbone", "nope"], "model.backbone: unknown backbone 'nope'; choose one of "),
    (["train", "{data}", "--set", "train.nope=1"], "config: unknown key 'train.nope' (valid: train.budget_s, train.epochs, "),
    (["predict", "{data}/red/0.png", "{data}/red/0.png"], "unknown model format '.png'"),
    (["train", "{data}", "--budget", "abc"], "--budget abc: expected a duration such as 90s, 10m or 1h"),
    (["train", "{data}", "--budget", "0"], "--budget 0: must be more than 0 seconds"),
    (["train", "{data}", "--budget", "2s"], "a budget of 2 s is too small for this data on this machine: the "
                                           "smallest plan needs about "),
])
def test_user_errors_are_one_line_of_ours_and_exit_2(args, message, two_classes):
    """The first (and only) line a user sees on stderr is ours: no TensorFlow start-up lines, no
    traceback, whatever the command imports."""
    result = _imgclf(*[a.replace("{data}", str(two_classes)) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgclf: error: ") and message in lines[0], result.stderr


def test_serve_on_a_busy_port_fails_in_one_line_before_loading(two_classes):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # the source is no model at all: the port is checked first, so the error is the port's
        result = _imgclf("serve", two_classes, "--port", port)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"imgclf: error: cannot listen on 127.0.0.1:{port} (Address already in use)"]


def test_tensorflow_start_up_lines_are_dropped_and_everything_else_kept(capfd):
    import os
    from imgclf.console import quiet_native_stderr
    with quiet_native_stderr():
        for line in ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                     "I0000 00:00:1796160544.267706    2700 port.cc:153] oneDNN custom operations are on.",
                     "E0000 00:00:1796160544.267706    2700 foo.cc:1] a real C++ error",
                     "fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, output_inference_type: FLOAT32",
                     "a Python warning the user needs"):
            os.write(2, (line + "\n").encode())
    assert capfd.readouterr().err.splitlines() == ["E0000 00:00:1796160544.267706    2700 foo.cc:1] a real C++ error",
                                                   "a Python warning the user needs"]


def test_tensorflow_is_imported_quietly_unless_verbose_or_not_needed(monkeypatch):
    import argparse

    import imgclf.console
    from imgclf.cli.commands import _tensorflow
    calls = []
    monkeypatch.setattr(imgclf.console, "import_tensorflow_quietly", lambda: calls.append(1))
    _tensorflow(argparse.Namespace(verbose=True))
    _tensorflow(argparse.Namespace(verbose=False), model="export/model_int8.tflite")  # LiteRT needs no TF
    assert calls == []
    _tensorflow(argparse.Namespace(verbose=False), model="runs/x")
    _tensorflow(argparse.Namespace(verbose=False))
    assert calls == [1, 1]


def test_export_choices_are_the_format_table():
    from imgclf.deploy.formats import FORMATS
    export = next(a for a in build_parser()._subparsers._group_actions[0].choices["export"]._actions
                  if a.dest == "format")
    assert export.choices == [*FORMATS, "all"] and "onnx" in FORMATS
