import subprocess
import sys

import pytest

from imgclf.cli import build_parser, main

SUBCOMMANDS = ["train", "evaluate", "predict", "inspect", "backbones", "datasets", "export", "serve"]


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
