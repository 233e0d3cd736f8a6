"""ifnsig, pydeseq2 and (when installed) R DESeq2 and limma-voom on the same paired data.

One simulated paired cohort (``bench_blocked_de.simulate_paired``: N/2 subjects at two
timepoints, ``~ subject + timepoint``) is fitted back to back by each tool with the same
number of cores: ifnsig's subject-blocked fit and pydeseq2 0.5 as released (each
``DeseqDataSet.deseq2()`` plus the Wald test, in a fresh Python process, as
``bench_blocked_de.py`` runs them), R DESeq2 (``DESeq()`` with BiocParallel workers, then
``results()``) and limma-voom (``voom`` then ``lmFit``/``eBayes``) when ``Rscript`` finds
them. R's time includes its start-up and reading the counts. Prints wall times, the ratio of
each to ifnsig's and the 1-minute load average before and after each tool: the machine may
be shared, and a loaded machine lengthens every time.

Examples
--------
python benchmarks/bench_side_by_side.py --samples 100 --genes 2000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent

R_DESEQ2 = r"""
suppressPackageStartupMessages({library(DESeq2); library(BiocParallel)})
args <- commandArgs(trailingOnly = TRUE)
cores <- as.integer(args[2])
register(MulticoreParam(cores))
counts <- as.matrix(read.delim(file.path(args[1], "counts.tsv"), row.names = 1,
                               check.names = FALSE))
meta <- read.delim(file.path(args[1], "meta.tsv"), row.names = 1)
meta$subject <- factor(meta$subject)
meta$timepoint <- factor(meta$timepoint)
dds <- DESeqDataSetFromMatrix(counts, meta, ~ subject + timepoint)
dds <- DESeq(dds, parallel = cores > 1, quiet = TRUE)
res <- results(dds, name = "timepoint_T1_vs_T0")
cat(sum(res$padj < 0.05, na.rm = TRUE), "\n")
"""

R_LIMMA = r"""
suppressPackageStartupMessages({library(limma); library(edgeR)})
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.delim(file.path(args[1], "counts.tsv"), row.names = 1,
                               check.names = FALSE))
meta <- read.delim(file.path(args[1], "meta.tsv"), row.names = 1)
design <- model.matrix(~ factor(subject) + factor(timepoint), meta)
y <- calcNormFactors(DGEList(counts))
fit <- eBayes(lmFit(voom(y, design), design))
cat(sum(topTable(fit, coef = ncol(design), number = Inf)$adj.P.Val < 0.05), "\n")
"""


def installed(packages: str) -> bool:
    """Whether ``Rscript`` loads the packages."""
    try:
        check = subprocess.run(
            ["Rscript", "-e", f"suppressPackageStartupMessages({{{packages}}})"],
            capture_output=True,
        )
    except FileNotFoundError:
        return False
    return check.returncode == 0


def run_r(script: str, folder: Path, cores: int) -> dict:
    """Wall time and the count of calls printed by an R script."""
    path = folder / "script.R"
    path.write_text(script)
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["Rscript", str(path), str(folder), str(cores)], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {"wall_s": round(wall, 1), "status": f"error rc={proc.returncode}"}
    return {
        "wall_s": round(wall, 1),
        "n_padj_lt_0.05": int(proc.stdout.split()[-1]),
        "status": "ok",
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from bench_blocked_de import run_child, simulate_paired

    child = argparse.Namespace(genes=args.genes, n_cpus=args.cores, seed=args.seed, timeout=None)
    rows = []

    def record(tool: str, run) -> None:
        before = os.getloadavg()[0]
        row = {"tool": tool, **run()}
        row["load_before"], row["load_after"] = round(before, 1), round(os.getloadavg()[0], 1)
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False), flush=True)

    record("ifnsig (blocked)", lambda: run_child(child, args.samples, "blocked"))
    record("pydeseq2 0.5", lambda: run_child(child, args.samples, "default"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counts, meta = simulate_paired(args.samples, args.genes, args.seed)
        counts.T.to_csv(folder / "counts.tsv", sep="\t")
        meta.to_csv(folder / "meta.tsv", sep="\t")
        for tool, packages, script in [
            ("R DESeq2", "library(DESeq2); library(BiocParallel)", R_DESEQ2),
            ("limma-voom", "library(limma); library(edgeR)", R_LIMMA),
        ]:
            if installed(packages):
                record(tool, lambda script=script: run_r(script, folder, args.cores))
            else:
                rows.append({"tool": tool, "status": "not installed"})
    table = pd.DataFrame(rows)
    ours = table.loc[0, "wall_s"]
    table["ratio_to_ifnsig"] = (table["wall_s"] / ours).round(1)
    columns = ["tool", "wall_s", "ratio_to_ifnsig", "n_padj_lt_0.05", "status", "load_before",
               "load_after"]  # fmt: skip
    print()
    print(f"{args.samples} samples x {args.genes} genes, {args.cores} cores, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    print(table.reindex(columns=columns).to_string(index=False))


if __name__ == "__main__":
    main()
