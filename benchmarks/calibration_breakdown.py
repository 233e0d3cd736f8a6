"""Where the false positives of a calibration run fall, from the null cohorts it kept.

Reads a working directory written by ``bench_calibration.py --keep --workdir DIR`` and prints,
over its null cohorts:

- the null genes at p < 0.001 and p < 0.05 with DESeq2's normal and t references (the t
  p-values computed as the benchmark computes them), for the IFN-driven genes (a non-zero
  IFN loading in ``truth_genes.tsv``: ISGs and IFN-gamma-biased genes) and for the others;
- the gene sets that prerank and the set tests call at FDR < 0.05, with how many simulated
  ISGs and cell-type markers (``ifnsig.simulate``) each holds.

Example
-------
python benchmarks/calibration_breakdown.py --workdir calibration_visits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ALPHA = 0.05


def de_by_role(folder: Path) -> pd.DataFrame:
    """One row per tested gene and contrast: normal and t p-values, IFN-driven or not."""
    from ifnsig.de.deseq2_compat import wald_t_pvalues

    truth = pd.read_csv(folder / "inputs" / "truth_genes.tsv", sep="\t").set_index("gene_id")
    rows = []
    for path in sorted((folder / "results" / "de").glob("*.samples.tsv")):
        name = path.name.removesuffix(".samples.tsv")
        de = pd.read_csv(folder / "results" / "de" / f"{name}.tsv", sep="\t")
        fitted = pd.read_csv(path, sep="\t")
        # ~ subject + timepoint: the benchmark's degrees of freedom.
        df = len(fitted) - fitted["subject"].nunique() - (fitted["timepoint"].nunique() - 1)
        de = de[de["pvalue"].notna()].copy()
        de["p_t"] = wald_t_pvalues(de["stat"].to_numpy(), df)
        de["ifn_driven"] = de["gene_id"].map(truth["ifn_loading"]).to_numpy() != 0
        rows.append(de[["gene_id", "pvalue", "p_t", "ifn_driven"]].assign(contrast=name))
    return pd.concat(rows)


def called_sets(folder: Path, sets: dict, isgs: set, markers: set) -> pd.DataFrame:
    rows = []
    for test in ("prerank", "set_tests"):
        for path in sorted((folder / "results" / "enrichment").glob(f"*.{test}.tsv")):
            table = pd.read_csv(path, sep="\t")
            for name in table.loc[table["fdr"] < ALPHA, "gene_set"]:
                genes = set(sets.get(name, []))
                rows.append(
                    {"test": test, "contrast": path.name.split(".")[0], "gene_set": name,
                     "isgs": len(genes & isgs), "markers": len(genes & markers)}
                )  # fmt: skip
    return pd.DataFrame(rows, columns=["test", "contrast", "gene_set", "isgs", "markers"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="bench_calibration's, kept")
    args = parser.parse_args(argv)
    from ifnsig import genesets, simulate

    sets = {**dict(genesets.load_gene_sets([genesets.SHIPPED_GMT])), **genesets.li2014_modules()}
    isgs = set(simulate.ISGS)
    markers = {gene for genes in simulate.CELL_MARKERS.values() for gene in genes}
    folders = sorted(args.workdir.glob("null_*"))
    de = pd.concat([de_by_role(f).assign(cohort=f.name) for f in folders])
    print(f"{len(folders)} null cohorts, DE null genes (gene x contrast tests):")
    for driven, group in de.groupby("ifn_driven"):
        cells = [
            f"{label} p < {level}: {int((group[column] < level).sum())} "
            f"({100 * (group[column] < level).mean():.3f}%)"
            for label, column in [("normal", "pvalue"), ("t", "p_t")]
            for level in (0.001, 0.05)
        ]
        print(
            f"  {'IFN-driven' if driven else 'other'} genes, {len(group)} tests: "
            + "; ".join(cells)
        )
    called = pd.concat([called_sets(f, sets, isgs, markers).assign(cohort=f.name) for f in folders])
    for test, group in called.groupby("test"):
        contrasts = group[["cohort", "contrast"]].drop_duplicates()
        without = group[group["isgs"] == 0]
        print(
            f"{test}: {len(group)} sets at FDR < {ALPHA} in {len(contrasts)} contrasts; "
            f"{len(without)} hold no ISG, of which {int((without['markers'] > 0).sum())} hold "
            f"cell-type markers ({without['markers'].min() if len(without) else 0} to "
            f"{without['markers'].max() if len(without) else 0})"
        )
        print(group["gene_set"].value_counts().head(12).to_string())


if __name__ == "__main__":
    main()
