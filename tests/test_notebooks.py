"""Course notebooks: committed clean (fast), and executed end to end + reproduced by nbval (marked).

The marked test runs every notebook with papermill in the ``ci`` profile through
``python -m hlgfa_lite.course.notebook_runner`` (a failure names the notebook and the cell), then
re-runs each executed copy with ``nbval --nbval-lax``: cells whose first line is
``# NBVAL_CHECK_OUTPUT`` must reproduce their output exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
EXPECTED = [
    "01_setup_and_data",
    "02_dual_resolution_features",
    "03_structure_and_detail_priors",
    "04_modulation_and_gated_residual",
    "05_training",
    "05b_normal_model",
    "06_ablation",
    "07_noise_augmentation",
    "08_real_data",
]
NOTEBOOKS = [NOTEBOOK_DIR / f"{name}.ipynb" for name in EXPECTED]
CELL_TIMEOUT = 900


def test_course_has_the_nine_notebooks() -> None:
    from hlgfa_lite.course.notebook_runner import course_notebooks

    assert [p.stem for p in course_notebooks()] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=EXPECTED)
def test_committed_notebook_is_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        assert not cell.outputs, f"{path.name}: code cell {i} has outputs; clear them before committing"
        assert cell.execution_count is None, f"{path.name}: code cell {i} has an execution count"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: first code cell must be tagged parameters"
    assert 'PROFILE = os.environ.get("HLGFA_PROFILE", "classroom")' in first.source
    assert "WORKDIR" in first.source
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert any("hlgfa_lite" in c.source for c in code), f"{path.name} does not use the library"
    assert "PROFILE" in code[1].source, f"{path.name}: the second cell derives the settings from PROFILE"
    assert "= setup(PROFILE, WORKDIR, THREADS" in code[1].source, f"{path.name}: settings come from course.setup"
    assert "SETTINGS" not in code[1].source and len(code[1].source.splitlines()) <= 15, f"{path.name}: a copied cell"
    assert any(c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in code), f"{path.name}: no nbval-checked cell"
    built = [c.source for c in code if "FrozenBackbone(" in c.source]
    assert not built, f"{path.name}: build the backbone with FrozenBackbone.for_config(CFG)"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_setup_builds_the_profiles_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hlgfa_lite.course.setup import SETTINGS, setup
    from hlgfa_lite.method.config import HLGFAConfig

    s, cfg, work, data, category = setup("ci", tmp_path / "work", 1)
    assert s == SETTINGS["demo"]["ci"] and category == s["categories"][0] == "brick"
    assert cfg == HLGFAConfig(image_size=s["image_size"], max_train_images=s["max_train_images"], epochs=s["epochs"],
                              num_threads=1)  # fmt: skip
    assert work.is_dir() and (data / category / "train" / "good").is_dir()
    assert "profile ci: 128 px" in capsys.readouterr().out
    s, cfg, _, data, category = setup("classroom", tmp_path / "real", 1, data="real")
    assert data is None and category is None and cfg.image_size == 256 and "test_good" in s
    with pytest.raises(ValueError, match="PROFILE='lab'"):
        setup("lab", tmp_path / "x", 1)


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        PYTHONHASHSEED="0",
        HLGFA_PROFILE="ci",
        HLGFA_WORKDIR=str(workdir),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    # one torch thread unless told otherwise, as in tests/conftest.py: two intra-op threads on a busy
    # 2-core machine spin against each other and make training 10-30x slower
    env.setdefault("HLGFA_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def notebook_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("notebooks")
    return {"workdir": base / "work", "executed": base / "executed"}


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=EXPECTED)
def test_notebook_executes_and_reproduces(path: Path, notebook_run: dict[str, Path]) -> None:
    env, executed = _env(notebook_run["workdir"]), notebook_run["executed"]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hlgfa_lite.course.notebook_runner", "--out", str(executed), "--profile", "ci",
         "--cell-timeout", str(CELL_TIMEOUT), str(path)],
        env=env, capture_output=True, text=True, timeout=1800, cwd=REPO,
    )  # fmt: skip
    papermill_s = time.perf_counter() - start
    assert proc.returncode == 0, f"papermill run of {path.name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    copy = executed / path.name
    assert copy.is_file()

    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
         f"--nbval-cell-timeout={CELL_TIMEOUT}", "--nbval-kernel-name=python3", str(copy)],
        env=env, capture_output=True, text=True, timeout=1800, cwd=executed,
    )  # fmt: skip
    nbval_s = time.perf_counter() - start
    assert proc.returncode == 0, f"nbval re-run of {path.name} does not reproduce:\n{proc.stdout[-6000:]}"
    timings = executed / "test_timings.json"
    record = json.loads(timings.read_text()) if timings.is_file() else {}
    record[path.stem] = {"papermill_s": round(papermill_s, 1), "nbval_s": round(nbval_s, 1)}
    timings.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{path.name}: papermill {papermill_s:.1f} s, nbval {nbval_s:.1f} s")


@pytest.mark.notebooks
def test_real_data_notebook_uses_elpv_without_a_download(tmp_path: Path) -> None:
    """Notebook 08 with no Magnetic Tile / MVTec folder: it trains and scores on the pip-installed ELPV cells."""
    pytest.importorskip("elpv_dataset", reason="elpv-dataset not installed (pip install hlgfa-lite[elpv])")
    path = NOTEBOOK_DIR / "08_real_data.ipynb"
    env = _env(tmp_path / "work") | {"HLGFA_DATA_ROOT": str(tmp_path / "no_such_dataset")}
    proc = subprocess.run(
        [sys.executable, "-m", "hlgfa_lite.course.notebook_runner", "--out", str(tmp_path / "executed"),
         "--profile", "ci", "--cell-timeout", str(CELL_TIMEOUT), str(path)],
        env=env, capture_output=True, text=True, timeout=1800, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, f"papermill run of {path.name} on ELPV failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    nb = nbformat.read(tmp_path / "executed" / path.name, as_version=4)
    printed = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )  # fmt: skip
    assert "using the **ELPV solar cells**" in printed and "non-commercial" in printed
    assert "elpv_mono: image AUROC" in printed and "quality floors met" in printed
    assert "skipped: no dataset" not in printed


# ------------------------------------------------------------------ defaults quoted in the notebooks' text

SENTENCE = re.compile(r"(?<=[.;!?])\s+|\n")
QUOTED = re.compile(r"`\s*(?P<key>[a-z_]+)\s*=\s*(?P<value>[^`]+?)\s*`")
UNQUOTED = re.compile(r"\bdefault\b[^`.;]*?\b(?:is|of|=|:)\s*\(?\d", re.I)
"""'the library default is 20': a default given as a bare number, not as a checkable ``key=value``."""
COURSE_TEXT = sorted([*NOTEBOOK_DIR.glob("*.ipynb"), *(REPO / "course" / "source").glob("*/*.ipynb"),
                      *(REPO / "app").glob("*.ipynb")])  # fmt: skip


def default_claims(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(config key, quoted value) for each ``key=value`` in a sentence that says 'default', and the
    sentences that quote a default as a bare number."""
    from hlgfa_lite.method.config import HLGFAConfig

    keys = set(HLGFAConfig.__dataclass_fields__)
    quoted, bare = [], []
    for sentence in SENTENCE.split(text):
        if not re.search(r"\bdefault\b", sentence, re.I):
            continue
        hits = [(m["key"], m["value"]) for m in QUOTED.finditer(sentence) if m["key"] in keys]
        quoted += hits
        if not hits and UNQUOTED.search(sentence):
            bare.append(sentence.strip())
    return quoted, bare


def _same(value: object, default: object) -> bool:
    if isinstance(default, tuple) and isinstance(value, (tuple, list)):
        return tuple(value) == default
    return value == default and (type(value) is type(default) or isinstance(default, float))


def test_default_claims_parser_catches_the_stale_forms() -> None:
    quoted, bare = default_claims("Train with the library default `epochs=20` and look again. More epochs help.")
    assert quoted == [("epochs", "20")] and not bare
    assert default_claims("more epochs help (the library default is 20).")[1]
    quoted, _ = default_claims('With `scoring="auto"` (the default) two are tried; `guidance="full"` copies.')
    assert quoted == [("scoring", '"auto"')]  # the second sentence says nothing about defaults


def test_notebook_text_quotes_only_the_configs_defaults() -> None:
    import ast

    from hlgfa_lite.method.config import HLGFAConfig

    defaults = HLGFAConfig()
    wrong, seen = [], 0
    for path in COURSE_TEXT:
        for i, cell in enumerate(nbformat.read(path, 4).cells):
            if cell.cell_type != "markdown":
                continue
            quoted, bare = default_claims(cell.source)
            wrong += [f"{path.name} cell {i}: a default without its key: {s!r}" for s in bare]
            for key, text in quoted:
                seen += 1
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    wrong.append(f"{path.name} cell {i}: `{key}={text}` is not a literal")
                    continue
                if not _same(value, getattr(defaults, key)):
                    wrong.append(f"{path.name} cell {i}: `{key}={text}`, but the default is {getattr(defaults, key)!r}")
    assert not wrong, "\n".join(wrong)
    assert seen >= 4, f"only {seen} quoted defaults found: the parser no longer sees the notebooks' text"
