"""Peak memory and time of the pseudobulk of a simulated single-cell .h5ad (1,000,000 cells).

A cells x genes CSR matrix of integer UMI counts (float32, as scanpy writes them) is written
block by block into a temporary ``.h5ad`` with a ``sample`` and a ``cell_type`` obs column;
the cells of every sample are spread over the whole file. Each measurement runs in a child
process (interpreter start and imports included), its peak resident memory read with
``os.wait4``:

- ``blocked``: :func:`ifnsig.formats.pseudobulk`, the workflow's path (the matrix read in
  blocks);
- ``memory`` (with ``--in-memory``): the whole file read with ``anndata.read_h5ad`` and summed
  with ``scanpy.get.aggregate``, for comparison and as the reference the tables must equal.

Every table's per-sample totals are checked against the totals counted while simulating.
One row per measurement is appended to ``benchmarks/out/pseudobulk.tsv``.

Example
-------
python benchmarks/bench_pseudobulk.py --cells 1000000
python benchmarks/bench_pseudobulk.py --cells 100000 --in-memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "out" / "pseudobulk.tsv"
# Cells simulated per written block.
WRITE_BLOCK = 20_000


def simulate(path: Path, cells: int, genes: int, samples: int, per_cell: int, seed: int):
    """Write the .h5ad; return the total count of each sample (in order of first cell)."""
    import anndata as ad
    import h5py

    rng = np.random.default_rng(seed)
    sample = rng.integers(0, samples, size=cells)
    names = np.array([f"S{k:04d}" for k in range(samples)])
    obs = pd.DataFrame(
        {
            "sample": pd.Categorical(names[sample], categories=names),
            "cell_type": pd.Categorical(rng.choice(["B", "Mono", "NK", "T"], size=cells)),
        },
        index=pd.Index([f"cell{i:08d}" for i in range(cells)]),
    )
    var = pd.DataFrame(index=[f"GENE{g:05d}" for g in range(genes)])
    ad.AnnData(obs=obs, var=var).write_h5ad(path)
    del obs
    # Detected genes of a cell as gaps between positions: sorted and distinct (a canonical
    # CSR row) without sorting, about per_cell of them.
    width = int(per_cell + 6 * per_cell**0.5 + 10)
    totals = np.zeros(samples, dtype=np.int64)
    indptr = np.zeros(cells + 1, dtype=np.int64)
    with h5py.File(path, "a") as handle:
        group = handle.create_group("X")
        group.attrs.update(
            {"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (cells, genes)}
        )
        data = group.create_dataset("data", (0,), maxshape=(None,), dtype="f4", chunks=(1 << 18,))
        indices = group.create_dataset(
            "indices", (0,), maxshape=(None,), dtype="i4", chunks=(1 << 18,)
        )
        for start in range(0, cells, WRITE_BLOCK):
            stop = min(cells, start + WRITE_BLOCK)
            position = np.cumsum(rng.geometric(per_cell / genes, (stop - start, width)), axis=1)
            row, column = np.nonzero(position <= genes)
            gene = position[row, column] - 1
            value = rng.geometric(0.6, len(gene))
            totals += np.bincount(sample[start:stop][row], weights=value, minlength=samples).astype(
                np.int64
            )
            indptr[start + 1 : stop + 1] = indptr[start] + np.cumsum(
                np.bincount(row, minlength=stop - start)
            )
            end = data.shape[0]
            data.resize((end + len(gene),))
            indices.resize((end + len(gene),))
            data[end:] = value.astype(np.float32)
            indices[end:] = gene.astype(np.int32)
        group.create_dataset("indptr", data=indptr)
    first = dict.fromkeys(names[sample])
    return pd.Series(totals, index=names).loc[list(first)], int(indptr[-1])


def run_child(path: Path, mode: str, table: Path) -> None:
    """Child process: one pseudobulk of ``path``, written to ``table``; prints its time."""
    start = time.perf_counter()
    settings = {"single_cell": True, "sample_column": "sample"}
    if mode == "blocked":
        from ifnsig.formats import pseudobulk

        frame = pseudobulk(path, settings)
    else:
        import anndata as ad
        import scanpy as sc
        import scipy.sparse as sp

        adata = ad.read_h5ad(path)
        adata.obs["sample"] = adata.obs["sample"].astype(str)
        summed = sc.get.aggregate(adata, by="sample", func="sum")
        values = summed.layers["sum"]
        values = values.toarray() if sp.issparse(values) else np.asarray(values)
        frame = pd.DataFrame(
            np.rint(values).astype(np.int64).T,
            index=pd.Index(adata.var_names.astype(str), name="gene_id"),
            columns=summed.obs_names.astype(str),
        )[list(dict.fromkeys(adata.obs["sample"]))]
    frame.to_csv(table, sep="\t")
    print(json.dumps({"stage_s": time.perf_counter() - start}))


def measure(path: Path, mode: str, table: Path) -> dict:
    """Run one child; its wall time, its own time and its peak resident memory."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, "--run", str(path), "--mode", mode, "--table", str(table)],
        stdout=subprocess.PIPE,
        text=True,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the {mode} child failed with exit code {child.returncode}")
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "stage_s": round(json.loads(output.strip().splitlines()[-1])["stage_s"], 1),
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


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
        totals, nnz = simulate(
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
            result = measure(path, mode, tables[mode])
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
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    if OUT.exists():
        table = pd.concat([pd.read_csv(OUT, sep="\t"), table])
    table.to_csv(OUT, sep="\t", index=False)


if __name__ == "__main__":
    main()
