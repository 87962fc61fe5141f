"""The nearest-neighbour search of one level, timed: the package's blocked torch search (float32, and the
bfloat16 search where the CPU has it) against faiss's exact ``IndexFlatL2`` when faiss-cpu is installed.

The shapes are the default's at 256 px: 1,024 stride-8 cells (80 channels for the pair, 40 for the
appearance patch) and 256 stride-16 cells (224 / 112) against a 4,096-cell memory. Prints ms per call;
run it alone on the machine (docs/DESIGN.md, "Other knobs measured").

    .venv/bin/python benchmarks/search_backends.py [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from hlgfa_lite.method.scoring.memory_bank import bf16_search, nearest_sq_distance

SHAPES = ((1024, 80), (1024, 40), (256, 224), (256, 112))


def timed(call, *args, repeats: int = 30) -> float:
    """Mean ms of ``call(*args)`` after three warm-up calls."""
    for _ in range(3):
        call(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        call(*args)
    return (time.perf_counter() - start) / repeats * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        faiss = None
        print("faiss-cpu not installed: torch only (pip install faiss-cpu to compare)")
    gen = torch.Generator().manual_seed(0)
    print(f"CPU bfloat16 search: {bf16_search()}")
    for queries, dims in SHAPES:
        memory, q = torch.randn(4096, dims, generator=gen), torch.randn(queries, dims, generator=gen)
        sq, low = memory.pow(2).sum(dim=1), memory.to(torch.bfloat16)
        row = [f"float32 {timed(nearest_sq_distance, q, memory, sq):.2f}"]
        if bf16_search():
            row.append(f"bfloat16 {timed(nearest_sq_distance, q, memory, sq, low):.2f}")
        if faiss is not None:
            index = faiss.IndexFlatL2(dims)
            index.add(memory.numpy())
            found, _ = index.search(q.numpy(), 1)
            exact = nearest_sq_distance(q, memory, sq)
            assert torch.allclose(torch.from_numpy(found[:, 0]), exact, rtol=1e-3, atol=1e-3)
            row.append(f"faiss {timed(index.search, q.numpy(), 1):.2f}")
        print(f"{queries} queries x 4096 x {dims}: " + ", ".join(row) + " ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
