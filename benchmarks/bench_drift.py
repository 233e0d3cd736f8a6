"""Calibration of the paired DE fit as the cohort grows: where small null p-values come from.

Simulates a paired cohort with the package's simulator (``ifnsig.simulate``: N/2 patients
at baseline and month 6, no controls, ``--planted`` of the genes changed on treatment
besides the IFN genes) and fits ``~ subject + timepoint`` as the workflow does (DESeq2's
steps, ``ifnsig.de.deseq2_compat``; the subject-blocked backend unless ``--inference
dense``). Each ``--variants`` entry replaces one estimated quantity by the simulator's
truth, so that the excess of small null p-values can be traced to it:

* ``standard``: the workflow's fit;
* ``true_size_factors``: the simulated library factors instead of median-of-ratios;
* ``exclude_signatures``: median-of-ratios over every gene but those of the scored
  signatures (``de.size_factor_genes: exclude_signatures``, DESeq2's ``controlGenes``; the
  sets of ``--signatures``, by default the workflow's, matched to the simulated symbols as
  the workflow matches them: :func:`ifnsig.de.size_factors.size_factor_genes`);
* ``true_dispersions``: the simulated dispersions instead of the MAP estimates (the trend,
  prior and Cox-Reid-adjusted likelihood are then out of the picture);
* ``genewise``: the gene-wise (Cox-Reid-adjusted maximum likelihood) dispersions, without
  the prior;
* ``t``: the standard fit with the Wald statistic referred to Student's t (samples minus
  coefficients degrees of freedom, ``de.wald_distribution: t``).

Null genes are the simulator's background genes with no planted change. For each variant
it prints the null rate at p < 0.001 and p < 0.01 over the nominal rate, the mean and SD of
the null Wald statistics (a shift of the mean is a bias in the fold changes, an SD above 1
standard errors that are too small), the share of false calls among padj < 0.1 and the
power. ``--subset G`` fits only G genes (chosen at random, planted and null in their
proportions) with the size factors of all genes; ``--r`` fits the same subset with R
DESeq2 (``Rscript``; ``DESeq()`` with those size factors, then ``results()``) and compares.
The load average is printed beside every figure: the machine may be shared.

Examples
--------
python benchmarks/bench_drift.py --samples 4000 --genes 3000 --variants standard \
    true_size_factors true_dispersions genewise t
python benchmarks/bench_drift.py --samples 400 --genes 3000 --subset 300 --r \
    --inference blocked dense
python benchmarks/bench_drift.py --samples 1000 --genes 3000 --variants standard \
    true_size_factors exclude_signatures
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

VARIANTS = [
    "standard",
    "t",
    "true_size_factors",
    "exclude_signatures",
    "true_dispersions",
    "genewise",
]

R_SCRIPT = r"""
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.delim(file.path(args[1], "counts.tsv"), row.names = 1,
                               check.names = FALSE))
meta <- read.delim(file.path(args[1], "meta.tsv"), row.names = 1)
meta$subject <- factor(meta$subject)
meta$timepoint <- factor(meta$timepoint, levels = c("baseline", "month6"))
subset <- readLines(file.path(args[1], "subset.txt"))
# Size factors from every gene, as DESeq() would take them; the fit on the subset.
all <- estimateSizeFactors(DESeqDataSetFromMatrix(counts, meta, ~ subject + timepoint))
write.table(data.frame(sample = colnames(all), size_factor = sizeFactors(all)),
            file.path(args[1], "r_size_factors.tsv"), sep = "\t", quote = FALSE,
            row.names = FALSE)
dds <- DESeqDataSetFromMatrix(counts[subset, ], meta, ~ subject + timepoint)
sizeFactors(dds) <- sizeFactors(all)
dds <- DESeq(dds, quiet = TRUE)
res <- results(dds, name = "timepoint_month6_vs_baseline", alpha = 0.1)
out <- data.frame(gene = rownames(res), baseMean = res$baseMean, lfc = res$log2FoldChange,
                  stat = res$stat, pvalue = res$pvalue, padj = res$padj,
                  dispersion = dispersions(dds))
write.table(out, file.path(args[1], "r_results.tsv"), sep = "\t", quote = FALSE,
            row.names = FALSE)
"""


def load() -> str:
    """The 1-minute load average, for the line beside each figure."""
    return f"load {os.getloadavg()[0]:.1f}"


def simulate(n_samples: int, n_genes: int, planted: float, seed: int):
    """Counts (samples x genes), metadata, gene truth and library factors of one cohort."""
    from ifnsig.simulate import CohortSpec, simulate_cohort

    spec = CohortSpec(
        n_patients=n_samples // 2,
        n_controls=0,
        timepoints=("baseline", "month6"),
        n_genes=n_genes,
        n_treatment_genes=int(round(planted * n_genes)),
        seed=seed,
    )
    cohort = simulate_cohort(spec)
    samples = cohort.samples.set_index("sample")
    counts = cohort.counts.T.loc[samples.index]
    meta = samples[["subject", "timepoint"]].astype(str)
    meta["timepoint"] = pd.Categorical(meta["timepoint"], categories=["baseline", "month6"])
    truth = cohort.truth_genes.set_index("gene_id")
    library = cohort.truth_samples.set_index("sample")["library_factor"].loc[samples.index]
    keep = counts.columns[(counts.to_numpy() > 0).any(axis=0)]
    return counts[keep], meta, truth.loc[keep], library


def median_of_ratios(counts: pd.DataFrame, control: np.ndarray | None = None) -> np.ndarray:
    """DESeq2's size factors over the genes expressed in every sample (among ``control``)."""
    logs = np.log(counts.to_numpy(dtype=float))
    finite = np.isfinite(logs).all(axis=0)
    if control is not None:
        finite &= control
    geo = logs[:, finite].mean(axis=0)
    return np.exp(np.median(logs[:, finite] - geo, axis=1))


def signature_control_genes(genes: pd.Index, names: list[str]) -> np.ndarray:
    """Every gene but those of the signatures ``names`` (the workflow's matching)."""
    from ifnsig import genesets
    from ifnsig.de.size_factors import EXCLUDE_SIGNATURES, size_factor_genes

    var = pd.DataFrame({"symbol": genes.astype(str)}, index=genes)
    matched, _ = genesets.matched_signatures(
        names, var["symbol"], [genesets.SHIPPED_GMT], genesets.SHIPPED_ALIASES, min_genes=1
    )
    return size_factor_genes(EXCLUDE_SIGNATURES, var, matched)


def fit_dataset(counts, meta, size_factors, inference: str, n_cpus: int):
    """The workflow's fit of ``~ subject + timepoint`` with the given size factors."""
    from formulaic_contrasts import FormulaicContrasts

    from ifnsig.de.blocked import BlockedInference
    from ifnsig.de.deseq2_compat import DESeq2Inference, _fast_replicates, deseq_dataset_class

    design = pd.DataFrame(
        FormulaicContrasts(meta, "~subject + timepoint").design_matrix, index=meta.index
    ).astype(float)
    backend = (
        BlockedInference(n_cpus=n_cpus, min_levels=2)
        if inference == "blocked"
        else DESeq2Inference(n_cpus=n_cpus)
    )
    dds = deseq_dataset_class()(
        counts=counts, metadata=meta, design=design, refit_cooks=True, inference=backend,
        quiet=True,
    )  # fmt: skip
    dds.uns["cooks_count_heuristic"] = False
    with _fast_replicates():
        dds.fit_size_factors()
        dds.obs["size_factors"] = np.asarray(size_factors, dtype=float)
        dds.layers["normed_counts"] = dds.X / dds.obs["size_factors"].to_numpy()[:, None]
        dds.fit_genewise_dispersions()
        dds.fit_dispersion_trend()
        dds.fit_dispersion_prior()
        dds.fit_MAP_dispersions()
        dds.fit_LFC()
        dds.calculate_cooks()
        dds.refit()
        dds.cooks_outlier()
    return dds, backend


def with_dispersions(dds, backend, dispersions: np.ndarray):
    """A fitted dataset refitted (fold changes, Cook's) with other dispersions, in place."""
    from ifnsig.de.deseq2_compat import _fast_replicates

    other = dds
    other.var["dispersions"] = dispersions
    for key in ("_pvalue_cooks_outlier", "refitted", "replaced"):
        if key in other.var:
            del other.var[key]
    with _fast_replicates():
        other.fit_LFC()
        other.calculate_cooks()
        other.refit()
        other.cooks_outlier()
    return other


def wald_table(dds, backend, variant: str) -> pd.DataFrame:
    """Wald test of month 6 vs baseline as ``run_fit`` makes it (independent filtering)."""
    from pydeseq2.ds import DeseqStats

    from ifnsig.de.deseq2_compat import independent_filtering, wald_t_pvalues

    design = dds.obsm["design_matrix"]
    contrast = (design.columns == "timepoint[T.month6]").astype(float)
    stats = DeseqStats(dds, contrast=contrast, independent_filter=False, inference=backend,
                       quiet=True)  # fmt: skip
    stats.summary()
    table = stats.results_df.copy()
    if variant == "t":
        tested = table["pvalue"].notna()
        table.loc[tested, "pvalue"] = wald_t_pvalues(
            table.loc[tested, "stat"], design.shape[0] - design.shape[1]
        )
    table["padj"], _ = independent_filtering(table["baseMean"], table["pvalue"], 0.1)
    table["dispersion"] = dds.var["dispersions"]
    table["cooks_outlier"] = dds.var["_pvalue_cooks_outlier"]
    return table


def metrics(table: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Null calibration and calls of one results table."""
    truth = truth.loc[table.index]
    planted = truth["planted_de"].to_numpy(dtype=bool)
    null = (truth["role"].to_numpy() == "background") & ~planted
    p = table["pvalue"].to_numpy()
    z = table["stat"].to_numpy()
    tested = null & np.isfinite(p)
    called = table["padj"].to_numpy() < 0.1
    estimated, simulated = table["dispersion"].to_numpy(), truth["dispersion"].to_numpy()
    n_called = int(called.sum())
    return {
        "null_genes": int(tested.sum()),
        "p<0.001_x": float(np.mean(p[tested] < 0.001) / 0.001),
        "p<0.01_x": float(np.mean(p[tested] < 0.01) / 0.01),
        "null_z_mean": float(np.mean(z[tested])),
        "null_z_sd": float(np.std(z[tested])),
        "calls": n_called,
        "false_share": float((called & ~planted).sum() / n_called) if n_called else np.nan,
        "power": float((called & planted).sum() / max(planted.sum(), 1)),
        "null_disp_log2_bias": float(np.median(np.log2(estimated[tested] / simulated[tested]))),
        "cooks_flagged": int(table["cooks_outlier"].fillna(False).astype(bool).sum()),
    }


def run_r(counts, meta, genes, folder: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """R DESeq2 on the same counts: its size factors (all genes) and results (``genes``)."""
    counts.T.to_csv(folder / "counts.tsv", sep="\t")
    meta.to_csv(folder / "meta.tsv", sep="\t")
    (folder / "subset.txt").write_text("\n".join(map(str, genes)) + "\n")
    script = folder / "deseq2.R"
    script.write_text(R_SCRIPT)
    subprocess.run(["Rscript", str(script), str(folder)], check=True)
    sf = pd.read_csv(folder / "r_size_factors.tsv", sep="\t", index_col=0)["size_factor"]
    return pd.read_csv(folder / "r_results.tsv", sep="\t", index_col=0), sf.to_numpy()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--genes", type=int, default=3000)
    parser.add_argument("--planted", type=float, default=0.1, help="share of treatment genes")
    parser.add_argument("--subset", type=int, default=0, help="genes fitted (0: all)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["standard"])
    parser.add_argument("--inference", nargs="+", choices=["blocked", "dense"],
                        default=["blocked"])  # fmt: skip
    parser.add_argument("--r", action="store_true", help="also R DESeq2 on the subset")
    parser.add_argument("--signatures", nargs="+", default=None, help="sets of exclude_signatures")
    parser.add_argument("--n-cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    t0 = time.perf_counter()
    counts, meta, truth, library = simulate(args.samples, args.genes, args.planted, args.seed)
    print(f"simulated {counts.shape[0]} samples x {counts.shape[1]} genes in "
          f"{time.perf_counter() - t0:.0f} s ({load()})", flush=True)  # fmt: skip
    size_factors = {"estimated": median_of_ratios(counts)}
    size_factors["true"] = library.to_numpy() / np.exp(np.mean(np.log(library.to_numpy())))
    if "exclude_signatures" in args.variants:
        from ifnsig.scores import scored_signatures
        from ifnsig.validation import validate_config

        names = args.signatures or scored_signatures(validate_config({})["scores"])
        control = signature_control_genes(counts.columns, names)
        isg = (truth.loc[counts.columns, "role"] == "isg").to_numpy()
        left_out = f"{int((~control).sum())} genes left out"
        among = f"{int((isg & ~control).sum())} of the {int(isg.sum())} simulated ISGs"
        print(f"exclude_signatures ({', '.join(names)}): {left_out}, {among}")
        size_factors["exclude_signatures"] = median_of_ratios(counts, control)
    for name in [n for n in size_factors if n != "true"]:
        log_ratio = np.log(size_factors[name] / size_factors["true"])
        print(f"size factors, {name} vs true: log ratio by timepoint "
              + ", ".join(f"{tp} {np.mean(log_ratio[(meta['timepoint'] == tp).to_numpy()]):+.4f}"
                          for tp in ["baseline", "month6"]))  # fmt: skip
    genes = counts.columns
    if args.subset:
        rng = np.random.default_rng(args.seed)
        genes = pd.Index(np.sort(rng.choice(genes, args.subset, replace=False)))
    rows, tables = [], {}
    for inference in args.inference:
        fitted = {}
        # The variants that refit the standard dataset in place come after it.
        for variant in sorted(args.variants, key=VARIANTS.index):
            t1 = time.perf_counter()
            sf = {"true_size_factors": "true", "exclude_signatures": "exclude_signatures"}.get(
                variant, "estimated"
            )
            if sf not in fitted:
                fitted[sf] = fit_dataset(
                    counts[genes], meta, size_factors[sf], inference, args.n_cpus
                )
            dds, backend = fitted[sf]
            if variant == "true_dispersions":
                true = truth.loc[dds.var_names, "dispersion"].to_numpy()
                dds = with_dispersions(dds, backend, true)
            elif variant == "genewise":
                dds = with_dispersions(dds, backend, dds.var["genewise_dispersions"].to_numpy())
            table = wald_table(dds, backend, variant)
            tables[(inference, variant)] = table
            row = {"inference": inference, "variant": variant, **metrics(table, truth)}
            row["seconds"] = round(time.perf_counter() - t1, 1)
            row["load"] = round(os.getloadavg()[0], 1)
            rows.append(row)
            print(pd.DataFrame([row]).to_string(index=False), flush=True)
    if args.r:
        with tempfile.TemporaryDirectory() as folder:
            t1 = time.perf_counter()
            r, r_sf = run_r(counts, meta, genes, Path(folder))
            seconds = time.perf_counter() - t1
        ratio = np.abs(r_sf / size_factors["estimated"] - 1)
        print(f"size factors, R DESeq2 vs ifnsig: largest relative difference {ratio.max():.2g}")
        r["cooks_outlier"] = False
        row = {"inference": "R DESeq2 1.38", "variant": "standard", **metrics(r, truth)}
        row["seconds"], row["load"] = round(seconds, 1), round(os.getloadavg()[0], 1)
        rows.append(row)
        for (inference, variant), table in tables.items():
            if variant != "standard":
                continue
            both = table["stat"].notna() & r["stat"].reindex(table.index).notna()
            rel = np.abs(table.loc[both, "stat"] / r.loc[table.index[both], "stat"] - 1)
            same = (table["padj"] < 0.1) == (r["padj"].reindex(table.index) < 0.1)
            print(f"{inference} vs R: median relative Wald difference {np.median(rel):.2g}, "
                  f"same call at padj < 0.1 for {same.mean():.1%} of genes")  # fmt: skip
    print()
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
    main()
