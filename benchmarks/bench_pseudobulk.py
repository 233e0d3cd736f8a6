"""Peak memory and time of the pseudobulk of a simulated single-cell .h5ad (1,000,000 cells).

A cells x genes CSR matrix of integer UMI counts is written block by block into a temporary
``.h5ad`` by :func:`ifnsig.simulate.write_single_cells`. Each measurement runs in a child
process (``_measure.measure_child``: interpreter start and imports included, the child's own
peak resident memory):

- ``blocked``: :func:`ifnsig.formats.pseudobulk`, the workflow's path (the matrix read in
  blocks);
- ``memory`` (with ``--in-memory``): the whole file read with ``anndata.read_h5ad`` and summed
  with ``scanpy.get.aggregate`` (:func:`ifnsig.simulate.summed_in_memory`), for comparison and
  as the reference the tables must equal.

Every table's per-sample totals are checked against the totals counted while simulating.
One row per measurement is appended to ``benchmarks/out/pseudobulk.tsv``.

Example
-------
python benchmarks/bench_pseudobulk.py --cells 1000000
python benchmarks/bench_pseudobulk.py --cells 100000 --in-memory
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from _measure import append_rows, measure_child, report_step_time

OUT = Path(__file__).resolve().parent / "out" / "pseudobulk.tsv"


def run_child(path: Path, mode: str, table: Path) -> None:
    """Child process: one pseudobulk of ``path``, written to ``table``; prints its time."""
    start = time.perf_counter()
    settings = {"single_cell": True, "sample_column": "sample"}
    if mode == "blocked":
        from ifnsig.formats import pseudobulk

        frame = pseudobulk(path, settings)
    else:
        from ifnsig.simulate import summed_in_memory

        frame = summed_in_memory(path, settings)
    frame.to_csv(table, sep="\t")
    report_step_time(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--per-cell", type=int, default=600, help="mean detected genes per cell")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--in-memory", action="store_true", help="also time the in-memory path")
    parser.add_argument("--simulate-into", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_child(Path(args.run), args.mode, Path(args.table))
        return
    if args.simulate_into:
        folder = Path(args.simulate_into)
        from ifnsig.simulate import write_single_cells

        totals, nnz = write_single_cells(
            folder / "cells.h5ad", args.cells, args.genes, args.samples, args.per_cell, args.seed
        )
        totals.rename("total").to_csv(folder / "totals.tsv", sep="\t")
        (folder / "nonzero.txt").write_text(str(nnz))
        return

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        path = folder / "cells.h5ad"
        start = time.perf_counter()
        # Simulated in a child too: a child's peak memory starts from its parent's at fork.
        command = [sys.executable, __file__, "--simulate-into", str(folder)]
        for name in ["cells", "genes", "samples", "per_cell", "seed"]:
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        subprocess.run(command, check=True)
        setup = time.perf_counter() - start
        totals = pd.read_csv(folder / "totals.tsv", sep="\t", index_col=0)["total"]
        nnz = int((folder / "nonzero.txt").read_text())
        size_mb = path.stat().st_size / 2**20
        print(f"{args.cells} cells x {args.genes} genes, {nnz} non-zero counts, ", end="")
        print(f"{size_mb:.0f} MB written in {setup:.0f} s")
        tables = {}
        for mode in ["blocked", "memory"] if args.in_memory else ["blocked"]:
            tables[mode] = folder / f"{mode}.tsv"
            command = [sys.executable, __file__, "--run", str(path), "--mode", mode]
            result = measure_child([*command, "--table", str(tables[mode])])
            frame = pd.read_csv(tables[mode], sep="\t", index_col=0)
            assert list(frame.columns) == list(totals.index), "samples out of order"
            assert (frame.sum().to_numpy() == totals.to_numpy()).all(), "totals differ"
            rows.append(
                {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "mode": mode,
                    "cells": args.cells,
                    "genes": args.genes,
                    "samples": args.samples,
                    "nonzero": nnz,
                    "file_mb": round(size_mb),
                    **result,
                }
            )
            print(pd.Series(rows[-1]).to_string(), flush=True)
        if args.in_memory:
            same = tables["blocked"].read_bytes() == tables["memory"].read_bytes()
            print(f"blocked table byte-identical to the in-memory one: {same}")
            for row in rows:
                row["identical"] = same
    append_rows(OUT, rows)


if __name__ == "__main__":
    main()
