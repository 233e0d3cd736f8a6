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
* ``exclude_all_sets``: the same without every set of the shipped GMT (13 of the 50
  simulated ISGs are in none of them);
* ``exclude_changed``: median-of-ratios over the genes whose simulated change is zero
  (control genes known without error: what no real cohort has, the best ``controlGenes``
  can do);
* ``true_dispersions``: the simulated dispersions instead of the MAP estimates (the trend,
  prior and Cox-Reid-adjusted likelihood are then out of the picture);
* ``genewise``: the gene-wise (Cox-Reid-adjusted maximum likelihood) dispersions, without
  the prior;
* ``t``: the standard fit with the Wald statistic referred to Student's t (samples minus
  coefficients degrees of freedom, ``de.wald_distribution: t``).

Null genes are the simulator's background genes with no planted change. For each variant
it prints the null rate at p < 0.001 and p < 0.01 over the nominal rate (with the counts),
the mean and SD of the null Wald statistics (a shift of the mean is a bias in the fold
changes, an SD above 1 standard errors that are too small), the false calls among
padj < 0.1 (calls of genes not planted as DE, and of genes whose simulated change is
exactly zero: the seven IFN-gamma genes are not planted but fall by 0.03 to 0.14 log2
with the IFN activity, which 4,000 samples detect), BH's bound on the expected false share
(0.1 times the unchanged share of the adjusted genes) and the power. ``--seeds`` simulates
one cohort per seed and pools the counts over them, with Clopper-Pearson 95% intervals
(the false share taken over the calls as if they were fixed; null tests as independent).
``--size-factors-only`` prints, instead of fitting, the bias of median-of-ratios without
each kind of simulated changed gene (the IFN-loaded genes, the treatment genes, both) and
the treatment genes' count up and down, among all and among those in the median (a
count in every sample). ``--subset G`` fits only G genes (chosen at
random, planted and null in their proportions) with the size factors of all genes;
``--r`` fits the same subset with R DESeq2 (``Rscript``; ``DESeq()`` with those size
factors, then ``results()``), once with ``estimateSizeFactors()`` over every gene and once
with ``controlGenes =`` the ``exclude_signatures`` genes, and compares each with the same
variant here. The load average is printed beside every figure: the machine may be shared.

Examples
--------
python benchmarks/bench_drift.py --samples 4000 --genes 3000 --variants standard \
    true_size_factors true_dispersions genewise t
python benchmarks/bench_drift.py --samples 400 --genes 3000 --subset 300 --r \
    --inference blocked dense
python benchmarks/bench_drift.py --samples 1000 --genes 3000 --variants standard \
    true_size_factors exclude_signatures
python benchmarks/bench_drift.py --samples 100 --genes 3000 --variants standard \
    true_size_factors exclude_signatures --r --seeds 1 2 3
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
    "exclude_all_sets",
    "exclude_changed",
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
# One fit per size-factor choice: every gene (DESeq2's default), and controlGenes when a
# file of control genes is given. Size factors from every gene's counts; the fit on the subset.
controls <- file.path(args[1], "controls.txt")
runs <- list(standard = NULL)
if (file.exists(controls)) runs$exclude_signatures <- readLines(controls)
for (name in names(runs)) {
  all <- DESeqDataSetFromMatrix(counts, meta, ~ subject + timepoint)
  if (is.null(runs[[name]])) {
    all <- estimateSizeFactors(all)
  } else {
    all <- estimateSizeFactors(all, controlGenes = rownames(all) %in% runs[[name]])
  }
  write.table(data.frame(sample = colnames(all), size_factor = sizeFactors(all)),
              file.path(args[1], paste0("r_size_factors_", name, ".tsv")), sep = "\t",
              quote = FALSE, row.names = FALSE)
  dds <- DESeqDataSetFromMatrix(counts[subset, ], meta, ~ subject + timepoint)
  sizeFactors(dds) <- sizeFactors(all)
  dds <- DESeq(dds, quiet = TRUE)
  res <- results(dds, name = "timepoint_month6_vs_baseline", alpha = 0.1)
  out <- data.frame(gene = rownames(res), baseMean = res$baseMean, lfc = res$log2FoldChange,
                    stat = res$stat, pvalue = res$pvalue, padj = res$padj,
                    dispersion = dispersions(dds))
  write.table(out, file.path(args[1], paste0("r_results_", name, ".tsv")), sep = "\t",
              quote = FALSE, row.names = FALSE)
}
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
    """Null calibration and calls of one results table, with the counts behind each rate.

    ``false_calls`` counts calls of genes not planted as DE (``planted_de``, the share the
    earlier tables gave); ``unchanged_calls`` only those whose simulated month-6 change is
    exactly zero: the IFN-gamma genes (loadings 0 to 0.3) fall a little with the IFN activity
    without being planted, and large cohorts find them.
    """
    truth = truth.loc[table.index]
    planted = truth["planted_de"].to_numpy(dtype=bool)
    unchanged = truth["lfc_month6_vs_baseline"].to_numpy() == 0
    null = (truth["role"].to_numpy() == "background") & ~planted
    p = table["pvalue"].to_numpy()
    z = table["stat"].to_numpy()
    tested = null & np.isfinite(p)
    called = table["padj"].to_numpy() < 0.1
    adjusted = np.isfinite(table["padj"].to_numpy())
    estimated, simulated = table["dispersion"].to_numpy(), truth["dispersion"].to_numpy()
    n_called = int(called.sum())
    return {
        "null_genes": int(tested.sum()),
        "null_p<0.001": int((p[tested] < 0.001).sum()),
        "null_p<0.01": int((p[tested] < 0.01).sum()),
        "p<0.001_x": float(np.mean(p[tested] < 0.001) / 0.001),
        "p<0.01_x": float(np.mean(p[tested] < 0.01) / 0.01),
        "null_z_mean": float(np.mean(z[tested])),
        "null_z_sd": float(np.std(z[tested])),
        "calls": n_called,
        "false_calls": int((called & ~planted).sum()),
        "unchanged_calls": int((called & unchanged).sum()),
        "false_share": float((called & ~planted).sum() / n_called) if n_called else np.nan,
        # BH at 0.1 keeps the expected false share at or below 0.1 m0 / m (m: genes adjusted).
        "bh_bound": float(0.1 * (adjusted & unchanged).sum() / max(adjusted.sum(), 1)),
        "power": float((called & planted).sum() / max(planted.sum(), 1)),
        "null_disp_log2_bias": float(np.median(np.log2(estimated[tested] / simulated[tested]))),
        "cooks_flagged": int(table["cooks_outlier"].fillna(False).astype(bool).sum()),
    }


def interval(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95% interval of a share ``k`` of ``n``."""
    from scipy.stats import beta

    if n == 0:
        return np.nan, np.nan
    low = beta.ppf(0.025, k, n - k + 1) if k else 0.0
    high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def pooled(rows: list[dict]) -> pd.DataFrame:
    """Counts summed over seeds per fit and variant, with Clopper-Pearson intervals (calls
    taken as fixed for the false share; tests as independent for the null rate)."""
    frame = pd.DataFrame(rows)
    out = []
    for (inference, variant), group in frame.groupby(["inference", "variant"], sort=False):
        calls, false = int(group["calls"].sum()), int(group["false_calls"].sum())
        unchanged = int(group["unchanged_calls"].sum())
        null, k3 = int(group["null_genes"].sum()), int(group["null_p<0.001"].sum())
        k2 = int(group["null_p<0.01"].sum())
        f_low, f_high = interval(false, calls)
        u_low, u_high = interval(unchanged, calls)
        p_low, p_high = interval(k3, null)
        out.append({
            "inference": inference, "variant": variant, "seeds": len(group),
            "false": f"{false}/{calls} = {false / calls:.1%} ({f_low:.1%}-{f_high:.1%})",
            "unchanged": f"{unchanged}/{calls} = {unchanged / calls:.1%} "
                         f"({u_low:.1%}-{u_high:.1%})",
            "bh_bound": f"{group['bh_bound'].mean():.1%}",
            "null_p<0.001_x": f"{k3}/{null} = {k3 / null / 0.001:.2f} "
                              f"({p_low / 0.001:.2f}-{p_high / 0.001:.2f})",
            "null_p<0.01_x": f"{k2 / null / 0.01:.2f}",
            "null_z_mean": round(float(np.average(group["null_z_mean"],
                                                  weights=group["null_genes"])), 3),
            "power": f"{group['power'].mean():.1%}",
        })  # fmt: skip
    return pd.DataFrame(out)


def run_r(counts, meta, genes, folder: Path, controls=None) -> dict:
    """R DESeq2 on the same counts: per size-factor choice (every gene; ``controlGenes =
    controls`` when given) its size factors (from all genes) and results (on ``genes``)."""
    counts.T.to_csv(folder / "counts.tsv", sep="\t")
    meta.to_csv(folder / "meta.tsv", sep="\t")
    (folder / "subset.txt").write_text("\n".join(map(str, genes)) + "\n")
    names = ["standard"]
    if controls is not None:
        (folder / "controls.txt").write_text("\n".join(map(str, controls)) + "\n")
        names.append("exclude_signatures")
    script = folder / "deseq2.R"
    script.write_text(R_SCRIPT)
    subprocess.run(["Rscript", str(script), str(folder)], check=True)
    out = {}
    for name in names:
        sf = pd.read_csv(folder / f"r_size_factors_{name}.tsv", sep="\t", index_col=0)
        table = pd.read_csv(folder / f"r_results_{name}.tsv", sep="\t", index_col=0)
        out[name] = table, sf["size_factor"].to_numpy()
    return out


def run_seed(args, seed: int) -> list[dict]:
    """Every variant (and R DESeq2 with ``--r``) on the cohort of one seed."""
    t0 = time.perf_counter()
    counts, meta, truth, library = simulate(args.samples, args.genes, args.planted, seed)
    print(f"seed {seed}: simulated {counts.shape[0]} samples x {counts.shape[1]} genes in "
          f"{time.perf_counter() - t0:.0f} s ({load()})", flush=True)  # fmt: skip
    size_factors = {"estimated": median_of_ratios(counts)}
    size_factors["true"] = library.to_numpy() / np.exp(np.mean(np.log(library.to_numpy())))
    isg = (truth.loc[counts.columns, "role"] == "isg").to_numpy()
    controls = {}
    if "exclude_signatures" in args.variants or args.r:
        from ifnsig.scores import scored_signatures
        from ifnsig.validation import validate_config

        names = args.signatures or scored_signatures(validate_config({})["scores"])
        controls["exclude_signatures"] = signature_control_genes(counts.columns, names)
        label = ", ".join(names)
    if "exclude_all_sets" in args.variants:
        from ifnsig import genesets

        every = list(genesets.load_gene_sets([genesets.SHIPPED_GMT]))
        controls["exclude_all_sets"] = signature_control_genes(counts.columns, every)
        label = f"every set of {Path(genesets.SHIPPED_GMT).name}"
    if "exclude_changed" in args.variants:
        controls["exclude_changed"] = (
            truth.loc[counts.columns, "lfc_month6_vs_baseline"].to_numpy() == 0
        )
        label = "the simulated unchanged genes"
    for name, control in controls.items():
        left_out = f"{int((~control).sum())} genes left out"
        among = f"{int((isg & ~control).sum())} of the {int(isg.sum())} simulated ISGs"
        print(f"{name} ({label if name != 'exclude_signatures' else ', '.join(names)}): "
              f"{left_out}, {among}")  # fmt: skip
        size_factors[name] = median_of_ratios(counts, control)
    for name in [n for n in size_factors if n != "true"]:
        log_ratio = np.log(size_factors[name] / size_factors["true"])
        print(f"size factors, {name} vs true: log ratio by timepoint "
              + ", ".join(f"{tp} {np.mean(log_ratio[(meta['timepoint'] == tp).to_numpy()]):+.4f}"
                          for tp in ["baseline", "month6"]))  # fmt: skip
    if args.size_factors_only:
        # Which changed genes move the median: leave out those of one simulated kind at a time.
        simulated = truth.loc[counts.columns]
        m6 = (meta["timepoint"] == "month6").to_numpy()
        for name, control in [
            ("all", None),
            ("without the IFN-loaded genes", simulated["ifn_loading"] == 0),
            ("without the treatment genes", simulated["treatment_lfc"] == 0),
            ("without either", simulated["lfc_month6_vs_baseline"] == 0),
        ]:
            mask = None if control is None else control.to_numpy()
            log_ratio = np.log(median_of_ratios(counts, mask) / size_factors["true"])
            print(f"median of ratios {name}: month-6 minus baseline log ratio to the simulated "
                  f"factors {log_ratio[m6].mean() - log_ratio[~m6].mean():+.4f}")  # fmt: skip
        # DESeq2's median runs over the genes with a count in every sample.
        lfc, finite = simulated["treatment_lfc"].to_numpy(), (counts.to_numpy() > 0).all(axis=0)
        print(f"treatment genes: {(lfc > 0).sum()} up, {(lfc < 0).sum()} down; in the median "
              f"(a count in every sample; {finite.sum()} of {finite.size} genes): "
              f"{(finite & (lfc > 0)).sum()} up, {(finite & (lfc < 0)).sum()} down")  # fmt: skip
        return []
    genes = counts.columns
    if args.subset:
        rng = np.random.default_rng(seed)
        genes = pd.Index(np.sort(rng.choice(genes, args.subset, replace=False)))
    rows, tables = [], {}
    for inference in args.inference:
        fitted = {}
        # The variants that refit the standard dataset in place come after it.
        for variant in sorted(args.variants, key=VARIANTS.index):
            t1 = time.perf_counter()
            sf = variant if variant in controls else "estimated"
            sf = "true" if variant == "true_size_factors" else sf
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
            if args.tables:
                args.tables.mkdir(parents=True, exist_ok=True)
                keep = ["role", "planted_de", "lfc_month6_vs_baseline", "ifn_loading"]
                table.join(truth[keep]).to_csv(
                    args.tables / f"seed{seed}_{inference}_{variant}.tsv", sep="\t"
                )
            row = {"seed": seed, "inference": inference, "variant": variant,
                   **metrics(table, truth)}  # fmt: skip
            row["seconds"] = round(time.perf_counter() - t1, 1)
            row["load"] = round(os.getloadavg()[0], 1)
            rows.append(row)
            print(pd.DataFrame([row]).to_string(index=False), flush=True)
    if args.r:
        with tempfile.TemporaryDirectory() as folder:
            t1 = time.perf_counter()
            control = controls["exclude_signatures"]
            r_runs = run_r(counts, meta, genes, Path(folder), counts.columns[control])
            seconds = time.perf_counter() - t1
        print(f"R DESeq2, {len(r_runs)} fits: {seconds:.0f} s ({load()})")
        for variant, (r, r_sf) in r_runs.items():
            ours = size_factors["estimated" if variant == "standard" else variant]
            ratio = np.abs(r_sf / ours - 1)
            print(f"size factors ({variant}), R DESeq2 vs ifnsig: largest relative difference "
                  f"{ratio.max():.2g}")  # fmt: skip
            r["cooks_outlier"] = False
            row = {"seed": seed, "inference": "R DESeq2 1.38", "variant": variant,
                   **metrics(r, truth)}  # fmt: skip
            row["seconds"], row["load"] = round(seconds, 1), round(os.getloadavg()[0], 1)
            rows.append(row)
            for (inference, ours_variant), table in tables.items():
                if ours_variant != variant:
                    continue
                both = table["stat"].notna() & r["stat"].reindex(table.index).notna()
                rel = np.abs(table.loc[both, "stat"] / r.loc[table.index[both], "stat"] - 1)
                same = (table["padj"] < 0.1) == (r["padj"].reindex(table.index) < 0.1)
                print(f"{inference} {variant} vs R: median relative Wald difference "
                      f"{np.median(rel):.2g}, same call at padj < 0.1 for {same.mean():.1%} "
                      f"of genes ({int((~same).sum())} differ)")  # fmt: skip
    return rows


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
    parser.add_argument("--r", action="store_true",
                        help="also R DESeq2 on the subset, with every gene's size factors and "
                             "with controlGenes = the exclude_signatures genes")  # fmt: skip
    parser.add_argument("--signatures", nargs="+", default=None, help="sets of exclude_signatures")
    parser.add_argument("--n-cpus", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1],
                        help="one cohort per seed; counts are pooled over them")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="TSV of the per-seed rows")
    parser.add_argument("--size-factors-only", action="store_true",
                        help="size factors' bias by kind of changed gene; no fit")  # fmt: skip
    parser.add_argument("--tables", type=Path, default=None,
                        help="folder for each fit's table with the simulated truth")  # fmt: skip
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    rows = []
    for seed in args.seeds:
        rows += run_seed(args, seed)
        if args.out:
            pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    print()
    if not rows:
        return
    print(pd.DataFrame(rows).to_string(index=False))
    print()
    print(f"pooled over seeds {', '.join(map(str, args.seeds))} ({load()}):")
    print(pooled(rows).to_string(index=False))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
    main()
