"""The package's three layers (method -> run -> course) import downward only; the figure module is a leaf."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hlgfa_lite"
LAYERS = ("method", "run", "course")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module, imported at module level?) for every ``from ... import`` / ``import`` in ``path``."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)  # x.y.__init__ for a package
    package = module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, id(node) in top_level))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, id(node) in top_level) for alias in node.names)
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hlgfa_lite" and parts[1] in LAYERS else None


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name, _ in _imports(path):
            target = _layer(name)
            if target is None or target in allowed:
                continue
            wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_the_layer_check_sees_relative_imports() -> None:
    """Guard the guard: the run layer's imports of the method are found and resolved."""
    names = {name for name, _ in _imports(PACKAGE / "run" / "train.py")}
    assert "hlgfa_lite.method.model" in names
    assert "hlgfa_lite.figures" in names  # the lazy one, resolved from ``from ..figures import``
    assert {name for name, _ in _imports(PACKAGE / "method" / "data" / "io.py")} >= {"hlgfa_lite.errors"}


LEAF_THIRD_PARTY = {"matplotlib", "numpy", "torch", "PIL"}
LEAF_OWN = {"hlgfa_lite.errors"}


def test_the_figure_module_is_a_leaf() -> None:
    """``hlgfa_lite/figures.py`` (used by run/ and course/) imports no layer: only plotting libraries."""
    wrong = []
    for name, _ in _imports(PACKAGE / "figures.py"):
        top = name.split(".")[0]
        if name in LEAF_OWN or top in LEAF_THIRD_PARTY or top in sys.stdlib_module_names or name == "__future__":
            continue
        wrong.append(name)
    assert not wrong, f"hlgfa_lite/figures.py imports {wrong}"
    assert not (PACKAGE / "course" / "figures.py").exists(), "the figures moved to hlgfa_lite/figures.py"


def test_every_module_is_named_in_the_layout() -> None:
    """docs/LAYOUT.md, the README's map of the package, names every module (``sweep*.py`` names the sweep family)."""
    text = (PACKAGE.parent / "docs" / "LAYOUT.md").read_text()
    unnamed = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem not in ("__init__", "__main__")
        and not re.search(rf"(?<!\w){re.escape(path.stem)}(?!\w)", text)
        and not (path.stem.startswith("sweep") and "sweep*.py" in text)
    ]
    assert not unnamed, f"modules docs/LAYOUT.md does not name: {unnamed}"
