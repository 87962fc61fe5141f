"""Stored results are data: every ablation results file ran the current default config, and the
generated section of docs/RESULTS.md is what its files say."""

from __future__ import annotations

import json
import re

import pytest

from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.run.ablation_results import (
    BEGIN,
    RESULTS_DIR,
    docs_section,
    load_results,
    replace_section,
    staleness,
)
from hlgfa_lite.run.peer_results import RESULTS_DIR as PEER_DIR
from hlgfa_lite.run.peer_results import docs_section as peers_section
from hlgfa_lite.run.peer_results import load_peer_results, operating_point_table, replace_peer_section, rerun_command
from hlgfa_lite.run.peer_results import staleness as peer_staleness
from hlgfa_lite.run.peer_standing import docs_section as standing_section
from hlgfa_lite.run.peer_standing import markdown_table as standing_table
from hlgfa_lite.run.peer_standing import replace_standing_section, standing

RECORDS = load_results()
REPO = RESULTS_DIR.parents[1]
NOTEBOOKS = sorted(REPO.glob("notebooks/*.ipynb")) + sorted(REPO.glob("course/source/*/*.ipynb"))
FIGURE = re.compile(r"\d\.\d{3}\b")
LITERATURE = {"0.977", "0.993"}
"""Published figures of other methods that notebook 08 cites with their source (DifferNet, CS-Flow)."""


def stored_figures() -> set[str]:
    """Every figure of the results files as the tables print it (3 decimals, no sign)."""
    found = set()
    for record in RECORDS.values():
        for row in record["summary"]:
            for key, value in row.items():
                values = value if isinstance(value, list) else [value]
                found |= {f"{abs(v):.3f}" for v in values if isinstance(v, float) and key != "seconds_fit"}
    return found


@pytest.mark.parametrize("name", sorted(RECORDS) or ["(none)"])
def test_results_file_ran_the_current_default(name: str) -> None:
    if name == "(none)":
        pytest.fail(f"no results file in {RESULTS_DIR}: run benchmarks/ablation_real.py")
    problem = staleness(RECORDS[name])
    assert problem is None, problem


def test_a_changed_default_is_reported_in_one_line_with_the_rerun_command() -> None:
    record = next(iter(RECORDS.values()))
    changed = record | {"config": record["config"] | {"prior_kernel": HLGFAConfig().prior_kernel + 2}}
    message = staleness(changed)
    assert message is not None and "\n" not in message
    assert record["path"] in message and "prior_kernel" in message
    assert "benchmarks/ablation_real.py --set " + record["set"] in message
    # seed, threads and device may differ without making a file stale
    assert staleness(record | {"config": record["config"] | {"seed": 7, "num_threads": 1, "device": "cpu"}}) is None


def test_results_files_hold_every_variant_seed_and_interval() -> None:
    for record in RECORDS.values():
        names = [row["variant"] for row in record["summary"]]
        assert names[0] == "full" and "appearance_evidence_only" in names and "identity_shortcut" in names
        for row in record["summary"][1:]:
            assert len(row["image_auroc_diff"]) == 3
        for variant in record["variants"].values():
            assert [r["seed"] for r in variant["runs"]] == record["seeds"]
        assert record["commit"] and record["config"]


def test_docs_ablation_section_is_generated_from_the_results_files() -> None:
    text = (RESULTS_DIR.parents[1] / "docs" / "RESULTS.md").read_text()
    assert replace_section(text, docs_section(RECORDS)) == text, (
        "docs/RESULTS.md's ablation section differs from results/ablation/: run benchmarks/render_results.py"
    )


def test_a_hand_edited_figure_in_the_docs_is_caught() -> None:
    text = (RESULTS_DIR.parents[1] / "docs" / "RESULTS.md").read_text()
    record = next(iter(RECORDS.values()))
    figure = f"{record['summary'][0]['pixel_auroc'] or record['summary'][0]['image_auroc']:.3f}"
    head, section = text.split(BEGIN, 1)
    assert figure in section
    edited = head + BEGIN + section.replace(figure, "0.123", 1)
    assert replace_section(edited, docs_section(RECORDS)) != edited
    assert replace_section(edited, docs_section(RECORDS)) == text


def test_results_files_are_valid_json_objects() -> None:
    for path in RESULTS_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_text_quotes_no_figure_outside_the_results_files(notebook) -> None:
    """Figures about this package's results are read from results/ (code cells), never typed into text;
    no notebook sends a reader to the README for a figure."""
    known = stored_figures() | LITERATURE
    for i, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        assert "README" not in text, f"{notebook.name} cell {i}: points to the README; link docs/RESULTS.md"
        typed = sorted(set(FIGURE.findall(text)) - known)
        assert not typed, f"{notebook.name} cell {i}: figures {typed} are not in results/ablation/*.json"


def test_cross_set_figure_draws_every_set_on_both_metrics() -> None:
    from hlgfa_lite.figures import ablation_differences

    fig = ablation_differences(RECORDS)
    image_ax, pixel_ax = fig.axes[:2]
    labels = [t.get_text() for t in image_ax.get_yticklabels()]
    assert labels[0] == "dual_resolution=off" and "appearance_evidence_only" in labels and "full" not in labels
    assert sorted(pixel_ax.get_legend_handles_labels()[1]) == sorted(
        n for n, r in RECORDS.items() if r["data"]["pixel_masks"]
    )


# ------------------------------------------------------------------ side by side with the peers

PEER_RECORDS = load_peer_results()


@pytest.mark.parametrize("name", sorted(PEER_RECORDS) or ["(none)"])
def test_peer_results_file_ran_the_current_default(name: str) -> None:
    if name == "(none)":
        pytest.skip(f"no side-by-side run stored in {PEER_DIR} yet (benchmarks/peers_side_by_side.py)")
    record = PEER_RECORDS[name]
    problem = peer_staleness(record)
    assert problem is None, problem
    assert set(record["methods"]) == {"hlgfa_lite", *record["peer_args"]} and record["commit"]
    assert set(record["peer_args"]) <= {"patchcore", "padim"}
    assert all(m["fit_s"] > 0 and m["ms_per_image"] > 0 for m in record["methods"].values())


def test_docs_peer_section_is_generated_from_the_peer_files() -> None:
    text = (REPO / "docs" / "RESULTS.md").read_text()
    assert replace_peer_section(text, peers_section(PEER_RECORDS)) == text, (
        "docs/RESULTS.md's side-by-side section differs from results/peers/: run benchmarks/render_results.py"
    )


def test_operating_point_table_has_a_row_per_set_that_measured_one() -> None:
    op = {"target": 0.01, "threshold": 1.5, "n_held_out": 41, "target_supported": False,
          "false_alarm_rate_bound": 1 / 42, "good_test": 39, "good_test_flagged": 1, "false_alarm_rate": 1 / 39,
          "false_alarm_rate_ci95": [0.0006, 0.1348], "defective_test": 71, "defects_found": 39}  # fmt: skip
    records = {"a": {"methods": {"hlgfa_lite": {"operating_point": op}}}, "b": {"methods": {"hlgfa_lite": {}}}}
    rows = operating_point_table(records).splitlines()[2:]
    assert rows == ["| a | 41 | ≤ 2.4% (n too small for 1%) | 1 of 39 (2.6%) | 0.1%–13.5% | 39 of 71 |"]


def test_a_stale_peer_file_is_reported_with_its_rerun_command() -> None:
    record = {"path": "results/peers/x.json", "command": rerun_command("x"),
              "config": HLGFAConfig().to_dict() | {"epochs": HLGFAConfig().epochs + 1}}  # fmt: skip
    message = peer_staleness(record)
    assert message is not None and "epochs" in message and "peers_side_by_side.py --set x" in message
    assert peer_staleness(record | {"config": HLGFAConfig().to_dict() | {"seed": 3}}) is None


def test_docs_assembly_section_is_generated_from_its_files() -> None:
    """The re-scored evidences' table (benchmarks/evidence_scores.py) is rendered from results/assembly/."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import evidence_scores

    text = (REPO / "docs" / "RESULTS.md").read_text()
    assert evidence_scores.replace(text) == text, (
        "docs/RESULTS.md's assembly section differs from results/assembly/: run benchmarks/render_results.py"
    )
    for record in evidence_scores.load().values():
        assert record["commit"] and record["config"] and set(record["variants"]) == set(evidence_scores.VARIANTS)


# ------------------------------------------------------------------ where the default stands (issue #27's bars)


def _peer_record(ours: dict, **peers: dict) -> dict:
    methods = {"hlgfa_lite": {"fit_s": 10.0, "ms_per_image": 40.0} | ours, **peers}
    return {"set": "x", "config": HLGFAConfig().to_dict(), "methods": methods}


def _ablation_record(values: list[float], config: dict | None = None) -> dict:
    runs = [{"seed": s, "image_auroc": v, "pixel_auroc": v, "pixel_aupro": v} for s, v in enumerate(values)]
    return {"set": "x", "path": "results/ablation/x.json", "command": "c",
            "config": config or HLGFAConfig().to_dict(), "variants": {"full": {"runs": runs}}}  # fmt: skip


def test_standing_compares_each_metric_with_the_best_peer_and_speed_with_the_named_peer() -> None:
    record = _peer_record(
        {"image_auroc": 0.95, "pixel_auroc": 0.90, "pixel_aupro": None},
        patchcore={"image_auroc": 0.96, "pixel_auroc": 0.80, "pixel_aupro": 0.7, "fit_s": 5.0, "ms_per_image": 80.0},
        padim={"image_auroc": 0.90, "pixel_auroc": 0.91, "pixel_aupro": 0.8, "fit_s": 4.0, "ms_per_image": 50.0},
    )
    s, ours = standing(record), record["methods"]["hlgfa_lite"]
    assert s["seeds"] == [0] and s["source"] == "results/peers/x.json"
    assert s["quality"]["image_auroc"] == (0.95, 0.96, "patchcore", False)
    assert s["quality"]["pixel_auroc"] == (0.90, 0.91, "padim", False)
    assert s["quality"]["pixel_aupro"] is None  # not measured by us: nothing to compare
    assert s["speed"] == {"fit_s": (2.0, False), "ms_per_image": (0.8, True), "backbone_ratio": None}
    assert "not stored" in standing_table({"x": s})  # a run from before the ratio was timed
    without = {k: v for k, v in record["methods"].items() if k != "patchcore"}
    no_patchcore = standing(record | {"methods": without})
    assert no_patchcore["speed"]["fit_s"] is None and no_patchcore["quality"]["image_auroc"][3] is True
    assert "not run" in standing_table({"x": no_patchcore})
    for ratio, ok in ((1.5, True), (1.51, False)):
        timed = record | {"methods": record["methods"] | {"hlgfa_lite": ours | {"backbone_ratio": ratio}}}
        assert standing(timed)["speed"]["backbone_ratio"] == (ratio, ok)


def test_standing_takes_the_mean_over_seeds_from_the_run_then_the_current_ablation() -> None:
    peer = {"image_auroc": 0.9, "pixel_auroc": 0.9, "pixel_aupro": 0.9, "fit_s": 1.0, "ms_per_image": 1.0}
    record = _peer_record({"image_auroc": 0.5, "pixel_auroc": 0.5, "pixel_aupro": 0.5}, padim=peer)
    ablation = _ablation_record([0.88, 0.92, 0.93])
    s = standing(record, ablation)
    assert s["seeds"] == [0, 1, 2] and s["source"] == "results/ablation/x.json"
    assert s["quality"]["image_auroc"][0] == pytest.approx(0.91) and s["quality"]["image_auroc"][3] is True
    stale = _ablation_record([0.88, 0.92, 0.93], HLGFAConfig().to_dict() | {"epochs": HLGFAConfig().epochs + 1})
    assert standing(record, stale)["quality"]["image_auroc"][0] == 0.5  # a stale ablation is not the default's
    seeds = [{"seed": 0, "image_auroc": 0.95, "pixel_auroc": 0.8, "pixel_aupro": 0.8},
             {"seed": 1, "image_auroc": 0.93, "pixel_auroc": 0.8, "pixel_aupro": 0.8}]  # fmt: skip
    own = standing(_peer_record({"seeds": seeds}, padim=peer), ablation)
    assert own["seeds"] == [0, 1] and own["source"] == "results/peers/x.json"
    assert own["quality"]["image_auroc"][0] == pytest.approx(0.94)


def test_docs_standing_section_is_generated_from_the_stored_runs() -> None:
    text = (REPO / "docs" / "RESULTS.md").read_text()
    assert replace_standing_section(text, standing_section(PEER_RECORDS, RECORDS)) == text, (
        "docs/RESULTS.md's standing section differs from results/: run benchmarks/render_results.py"
    )
