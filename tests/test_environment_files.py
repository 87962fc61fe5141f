"""environment.yml (conda users) lists the same dependencies, with the same pins, as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("hlgfa-lite")]
    return {r.replace(" ", "") for r in reqs}


def _environment_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_items = [m.group(1) for line in lines if (m := re.match(r"^\s{6}- (\S.*)$", line))]
    return {p.replace(" ", "") for p in pip_items if not p.startswith("-e")}


def test_environment_yml_matches_pyproject() -> None:
    assert _environment_requirements() == _pyproject_requirements()


def test_torch_pins_agree_everywhere() -> None:
    constraints = set((ROOT / "constraints.txt").read_text().split())
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= constraints
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= _pyproject_requirements()
