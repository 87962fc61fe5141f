"""Stored results are data: every ablation results file ran the current default config, and the
generated section of docs/RESULTS.md is what its files say."""

from __future__ import annotations

import json

import pytest

from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.run.ablation_results import (
    RESULTS_DIR,
    docs_section,
    load_results,
    replace_section,
    staleness,
)

RECORDS = load_results()


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
    figure = f"{record['summary'][0]['image_auroc']:.3f}"
    edited = text.replace(figure, "0.999", 1) if figure != "0.999" else text.replace(figure, "0.998", 1)
    assert replace_section(edited, docs_section(RECORDS)) != edited


def test_results_files_are_valid_json_objects() -> None:
    for path in RESULTS_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict)
