"""Regenerate docs/RESULTS.md's generated sections: the ablation (and its figures) from
results/ablation/*.json, the side-by-side runs with the peers from results/peers/*.json (and from both, where
the default stands against the best peer), the re-scored evidences from results/assembly/*.json (evidence_scores.py),
where predict's time goes from results/overhead/*.json (predict_overhead.py).

    .venv/bin/python benchmarks/render_results.py          # rewrite docs/RESULTS.md + docs/ablation/*.png
    .venv/bin/python benchmarks/render_results.py --check  # exit 1 if the docs differ from the files
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import evidence_scores  # benchmarks/ is on sys.path when run as a script
import predict_overhead

from hlgfa_lite.figures import ablation_bars, ablation_differences, save_figure
from hlgfa_lite.run.ablation_results import docs_section, load_results, replace_section
from hlgfa_lite.run.peer_results import docs_section as peers_section
from hlgfa_lite.run.peer_results import load_peer_results, replace_peer_section
from hlgfa_lite.run.peer_standing import docs_section as standing_section
from hlgfa_lite.run.peer_standing import replace_standing_section

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; write nothing")
    args = ap.parse_args(argv)
    records = load_results()
    results_md = DOCS / "RESULTS.md"
    text = results_md.read_text()
    peers = load_peer_results()
    new = replace_peer_section(replace_section(text, docs_section(records)), peers_section(peers))
    new = replace_standing_section(new, standing_section(peers, records))
    new = predict_overhead.replace(evidence_scores.replace(new))
    if args.check:
        if new != text:
            print(f"{results_md}: a generated section differs from results/; run {sys.argv[0]}")
            return 1
        return 0
    results_md.write_text(new)
    (DOCS / "ablation").mkdir(exist_ok=True)
    for name, record in records.items():
        fig = ablation_bars(record["summary"])
        fig.axes[0].set_title(f"ablation on {name} (mean ± std over seeds)")
        save_figure(fig, DOCS / "ablation" / f"{name}.png")
    if records:
        save_figure(ablation_differences(records), DOCS / "ablation" / "differences.png")
    print(f"wrote {results_md} and {DOCS / 'ablation'} from {len(records)} results file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
