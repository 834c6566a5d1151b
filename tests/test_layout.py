"""The tree reads as the pipeline: each stage imports only the stages before it."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "imgclf"
SHARED = {"errors", "config", "options", "files", "record", "ranking", "console", "__init__", "__version__"}
# The pipeline, in order; a package may import itself, the shared modules and those before it.
ORDER = ["data", "backbones", "runtime", "training", "health", "evaluation", "deploy", "serve", "workflow", "cli"]


def _stage(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else "__init__"
    if part == "__main__":  # `python -m imgclf` is the command line
        return "cli"
    return "shared" if part in SHARED else part


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imgclf"):
            names = [node.module] if node.module != "imgclf" else [f"imgclf.{a.name}" for a in node.names]
            yield from names
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("imgclf"))


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_later_stage(path):
    own = _stage("imgclf." + ".".join(path.relative_to(SRC).with_suffix("").parts))
    for target in _imports(path):
        other = _stage(target)
        if other == "shared" or other == own or target == "imgclf":
            continue
        assert own != "shared", f"{path.name}: a shared module imports the stage {target}"
        assert ORDER.index(other) < ORDER.index(own), f"{path.relative_to(SRC)} ({own}) imports {target} ({other})"


def test_every_package_says_what_it_owns_and_may_import():
    for init in SRC.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Owns" in doc, f"{init.parent.name}/__init__.py: no 'Owns' line"
        if init.parent.name != "cli":
            assert "May import" in doc or "may import" in doc, f"{init.parent.name}/__init__.py: no 'May import'"


def test_modules_stay_readable():
    """About 300 lines a module at most (STYLE.md); a module that grows past it is split."""
    long = {str(p.relative_to(SRC)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 310}
    assert not long, f"modules over 310 lines: {long}"
