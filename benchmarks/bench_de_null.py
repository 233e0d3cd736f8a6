"""Null p-values of the DE Wald test on the demo, with the normal and the t reference.

The demo's paired fit (``~ subject + timepoint``, 25 patients, 75 samples, 15,000 genes) as
R DESeq2 1.38.3 computes it, from the reference tables the tests compare ifnsig with
(``tests/data/demo_deseq2.R``: ``DESeq()``, normal reference; ``demo_paired_t_deseq2.R``:
``DESeq(useT = TRUE)``, t with 75 - 27 = 48 degrees of freedom, ``de.wald_distribution: t``).
ifnsig's tables equal them (``tests/test_de.py``: the same calls, Wald statistics within a
median relative difference of 3e-7), so these are ifnsig's rates too. Null genes are those
whose planted change in ``resources/demo/truth_genes.tsv`` is exactly 0 (neither treatment
genes nor ISGs: 14,643 of 15,000); planted genes are ``planted_de`` ones.

Printed per reference and contrast: null genes at p below 0.001, 0.01 and 0.05 (observed
over nominal), planted genes at padj < 0.05 (power) and the share of null genes among the
calls at padj < 0.05.

Example
-------
python benchmarks/bench_de_null.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
NORMAL = DATA / "demo_deseq2_1.38.3.tsv.gz"
T_REFERENCE = DATA / "demo_paired_t_deseq2_1.38.3.tsv.gz"
TRUTH = REPO / "resources" / "demo" / "truth_genes.tsv"
LEVELS = (0.001, 0.01, 0.05)


def reference_tables() -> dict[str, pd.DataFrame]:
    """R's tables as ``gene_id, contrast, pvalue, padj`` per reference."""
    normal = pd.read_csv(NORMAL, sep="\t")
    # The normal table stores the Wald statistic, not its p-value: DESeq2's is 2 * Phi(-|W|).
    normal["pvalue"] = 2.0 * stats.norm.sf(np.abs(normal["stat"]))
    t = pd.read_csv(T_REFERENCE, sep="\t").rename(columns={"table": "contrast"})
    keep = ["gene_id", "contrast", "pvalue", "padj"]
    return {"normal": normal[keep], "t": t[keep]}


def rates(table: pd.DataFrame, truth: pd.DataFrame) -> list[dict]:
    rows = []
    for contrast, part in table.groupby("contrast", sort=True):
        change = truth[f"lfc_{contrast}"].reindex(part["gene_id"]).to_numpy()
        planted = truth["planted_de"].reindex(part["gene_id"]).fillna(False).to_numpy(bool)
        null = change == 0
        p = part["pvalue"].to_numpy(float)
        called = part["padj"].to_numpy(float) < 0.05
        row = {"contrast": contrast, "null_genes": int((null & np.isfinite(p)).sum())}
        for level in LEVELS:
            hits = int((null & (p < level)).sum())
            row[f"p<{level}"] = hits
            row[f"ratio_{level}"] = hits / row["null_genes"] / level
        row["power_padj<0.05"] = (called & planted).sum() / planted.sum()
        row["false_share_padj<0.05"] = (called & ~planted).sum() / max(called.sum(), 1)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    truth = pd.read_csv(TRUTH, sep="\t").set_index("gene_id")
    out = []
    for reference, table in reference_tables().items():
        out += [{"reference": reference, **row} for row in rates(table, truth)]
    frame = pd.DataFrame(out)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
