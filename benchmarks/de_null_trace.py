"""Null DE p-values gene by gene: where the small ones come from, and R DESeq2 on the same counts.

Each null cohort comes from the calibration benchmark's simulator specs
(``bench_calibration.cohort_spec("null", ...)``: 25 patients at three timepoints, nothing
planted over time; ``--ifn-visit-sd`` the visit factor shared by the IFN genes). The
workflow's DE is run on it as its stages run it, without the VST (which no p-value reads):
``build_anndata``, the ``filter_genes`` stage's gene filter (``data.filter_genes``), the planned
fits (``de.plan_fits``: ``~ subject + timepoint`` on the patients' samples) fitted by
``de.fit_dataset`` and tested by ``de.fit.contrast_tests`` with the t reference
(``de.wald_distribution: t``). For every tested gene and contrast it records:

- the simulated dispersion and, for the IFN-driven genes, the dispersion the visit factor
  adds to it: a count of mean m and dispersion a whose mean is multiplied by a log-normal
  factor of log SD s has variance m + m^2 ((1 + a) exp(s^2) - 1), so its dispersion is
  ``(1 + a) exp(s^2) - 1`` with s = ln 2 x loading x SD (``effective_dispersion``); the
  simulated cell-type markers likewise carry their cell type's random composition shift
  (log2 SD 0.3 per sample, ``COMPOSITION_SD``) on top of their dispersion. The
  median-of-ratios size factors take up part of the visit factor where the IFN genes are a
  large share of the genes (a tenth of 600): ``size_factor_visit`` is the slope of the log2
  size factors (over the simulated library factors) on the visit factor, and
  ``effective_normalized`` the effective dispersion with the loading less that slope, what
  the counts carry once normalized;
- the gene-wise, trend, MAP and final dispersions, DESeq2's outlier flag (gene-wise above
  the trend by more than 2 SDs of the log residuals: then the gene-wise estimate is kept,
  ``estimateDispersionsMAP(outlierSD = 2)``), whether Cook's distance replaced a count;
- the base mean, the smallest count, and the normal and t p-values; the t p-value again
  with the gene-wise dispersions (no prior) and with the two effective simulated
  dispersions (fold changes refitted with them);
- for each contrast, the mean visit-factor change between the two timepoints over the
  patients (a shift shared by every IFN gene, so their small p-values come in clusters).

``--r`` also runs R DESeq2 (``DESeq(useT = TRUE)`` and ``results()`` per contrast, the
demo references' steps) on the same counts and samples and compares p-values and
dispersions gene by gene. Rows go to ``--out`` (TSV); the summary is printed with the
1-minute load average.

Example
-------
python benchmarks/de_null_trace.py --cohorts 20 --genes 600 --ifn-visit-sd 0.15 \
    --out benchmarks/out/de_null_trace_visits.tsv
python benchmarks/de_null_trace.py --cohorts 3 --genes 600 --ifn-visit-sd 0.15 --r
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
# ifnsig.simulate moves each cell type's markers together by N(0, 0.3) log2 per sample.
COMPOSITION_SD = 0.3
LEVELS = (0.001, 0.01, 0.05)

R_SCRIPT = r"""
suppressPackageStartupMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.delim(file.path(args[1], "counts.tsv"), row.names = 1,
                               check.names = FALSE))
meta <- read.delim(file.path(args[1], "meta.tsv"), row.names = 1, stringsAsFactors = FALSE)
meta$subject <- factor(meta$subject)
meta$timepoint <- relevel(factor(meta$timepoint), "baseline")
dds <- DESeqDataSetFromMatrix(counts[, rownames(meta)], meta, ~ subject + timepoint)
dds <- DESeq(dds, useT = TRUE, quiet = TRUE)
m <- mcols(dds)
out <- NULL
for (level in setdiff(levels(meta$timepoint), "baseline")) {
  res <- results(dds, name = paste0("timepoint_", level, "_vs_baseline"))
  out <- rbind(out, data.frame(
    contrast = paste0(level, "_vs_baseline"), gene_id = rownames(res),
    r_stat = res$stat, r_pvalue = res$pvalue, r_genewise = m$dispGeneEst,
    r_trend = m$dispFit, r_map = m$dispMAP, r_dispersion = m$dispersion,
    r_outlier = m$dispOutlier))
}
write.table(out, file.path(args[1], "r_results.tsv"), sep = "\t", quote = FALSE,
            row.names = FALSE)
writeLines(c(sprintf("%.10g", attr(dispersionFunction(dds), "dispPriorVar")),
             sprintf("%.10g", attr(dispersionFunction(dds), "varLogDispEsts"))),
           file.path(args[1], "r_prior.txt"))
"""


def load_calibration():
    spec = importlib.util.spec_from_file_location(
        "bench_calibration", HERE / "bench_calibration.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def effective_dispersion(dispersion, loading, visit_sd: float, markers=0) -> np.ndarray:
    """The negative binomial dispersion of counts whose mean also carries the visit factor
    (log2 fold change ``loading`` x N(0, ``visit_sd``)) and, for ``markers`` cell types, their
    composition shift (N(0, ``COMPOSITION_SD``) log2), to second moments."""
    log2_var = (np.asarray(loading, float) * visit_sd) ** 2 + np.asarray(
        markers
    ) * COMPOSITION_SD**2
    s2 = np.log(2) ** 2 * log2_var
    return (1 + np.asarray(dispersion, float)) * np.exp(s2) - 1


def refitted_pvalues(dds, backend, fit, alpha: float, dispersions: np.ndarray) -> dict:
    """t p-values of every contrast with the dispersions replaced (fold changes and Cook's
    refitted with them, as ``bench_drift.py`` does); the dataset is changed in place."""
    from ifnsig.de.deseq2_compat import _fast_replicates
    from ifnsig.de.fit import contrast_tests

    dds.var["dispersions"] = dispersions
    for key in ("_pvalue_cooks_outlier", "refitted", "replaced"):
        if key in dds.var:
            del dds.var[key]
    with _fast_replicates():
        dds.fit_LFC()
        dds.calculate_cooks()
        dds.refit()
        dds.cooks_outlier()
    return {
        test.name: test.table["pvalue"] for test in contrast_tests(dds, fit, backend, alpha, "t")
    }


def trace_cohort(seed: int, args, calibration, folder: Path, run_r: bool) -> pd.DataFrame:
    """One row per tested gene and contrast of one null cohort."""
    import anndata as ad

    from ifnsig import data, stages
    from ifnsig.de import plan
    from ifnsig.de.fit import contrast_tests, fit_dataset
    from ifnsig.settings import sheet_files, stage_settings
    from ifnsig.simulate import CELL_MARKERS, simulate_cohort

    spec = calibration.cohort_spec("null", seed, args.genes, args.patients, args.ifn_visit_sd)
    cohort = simulate_cohort(spec)
    cohort.write(folder / "inputs")
    config = calibration.project_config(folder, None)
    outputs = {"counts": str(folder / "counts.h5ad"), "samples": str(folder / "samples.tsv")}
    stages.build_anndata(sheet_files(config), outputs, stage_settings(config, "build_anndata"))
    adata = ad.read_h5ad(outputs["counts"])
    filtering = stage_settings(config, "filter_genes")["filtering"]
    adata = data.filter_genes(adata, filtering["min_count"], filtering["min_samples"])
    settings = stage_settings(config, "differential_expression")
    samples = plan.cohort_samples(adata.obs)
    truth = cohort.truth_genes.set_index("gene_id")
    visits = cohort.truth_samples.set_index("sample")
    alpha = settings["de"]["alpha"]
    frames = []
    for fit in plan.plan_fits(samples, settings):
        dds, backend = fit_dataset(adata, fit, samples, 1, settings["de"]["inference"])
        var = dds.var.copy()
        tables = {t.name: t.table for t in contrast_tests(dds, fit, backend, alpha, "t")}
        normal = {t.name: t.table for t in contrast_tests(dds, fit, backend, alpha, "normal")}
        genes = dds.var_names
        loading = truth.loc[genes, "ifn_loading"].to_numpy()
        simulated = truth.loc[genes, "dispersion"].to_numpy()
        markers = np.array(
            [sum(g in m for m in CELL_MARKERS.values()) for g in genes.astype(str)], float
        )
        effective = effective_dispersion(simulated, loading, args.ifn_visit_sd, markers)
        slope = size_factor_visit(dds, visits)
        normalized = effective_dispersion(simulated, loading - slope, args.ifn_visit_sd, markers)
        counts = np.asarray(dds.X)
        genewise_p = refitted_pvalues(
            dds, backend, fit, alpha, var["genewise_dispersions"].to_numpy()
        )
        effective_p = refitted_pvalues(dds, backend, fit, alpha, effective)
        normalized_p = refitted_pvalues(dds, backend, fit, alpha, normalized)
        fitted = samples.loc[fit.samples]
        for name, table in tables.items():
            test = name.split("_vs_")[0]
            shift = np.nan
            if "ifn_visit_factor" in visits:
                factor = visits.loc[fitted.index, "ifn_visit_factor"]
                by = factor.groupby([fitted["subject"], fitted["timepoint"]]).first().unstack()
                shift = float((by[test] - by[fit.reference]).mean())
            frames.append(
                pd.DataFrame(
                    {
                        "cohort": seed,
                        "contrast": name,
                        "gene_id": genes,
                        "role": truth.loc[genes, "role"].to_numpy(),
                        "ifn_loading": loading,
                        "base_mean": table["baseMean"].to_numpy(),
                        "min_count": counts.min(axis=0),
                        "simulated": simulated,
                        "effective": effective,
                        "effective_normalized": normalized,
                        "genewise": var["genewise_dispersions"].to_numpy(),
                        "trend": var["fitted_dispersions"].to_numpy(),
                        "map": var["MAP_dispersions"].to_numpy(),
                        "dispersion": var["dispersions"].to_numpy(),
                        "outlier": var["_outlier_genes"].to_numpy(bool),
                        "cooks_replaced": var.get("replaced", pd.Series(False, genes))
                        .fillna(False)
                        .to_numpy(bool),
                        "stat": table["stat"].to_numpy(),
                        "p_normal": normal[name]["pvalue"].to_numpy(),
                        "p_t": table["pvalue"].to_numpy(),
                        "p_t_genewise": genewise_p[name].to_numpy(),
                        "p_t_effective": effective_p[name].to_numpy(),
                        "p_t_effective_normalized": normalized_p[name].to_numpy(),
                        "size_factor_visit": slope,
                        "visit_shift": shift,
                        "prior_var": float(dds.uns["prior_disp_var"]),
                        "log_residual_sd": float(np.sqrt(dds.uns["_squared_logres"])),
                    }
                )
            )
        if run_r:
            frames[-len(tables) :] = [
                with_r(frame, adata, fit, folder) for frame in frames[-len(tables) :]
            ]
    return pd.concat(frames, ignore_index=True)


def size_factor_visit(dds, visits: pd.DataFrame) -> float:
    """Slope of the fit's log2 size factors (over the simulated library factors) on the
    visit factor; 0 without one."""
    if "ifn_visit_factor" not in visits:
        return 0.0
    samples = dds.obs_names
    factor = visits.loc[samples, "ifn_visit_factor"].to_numpy()
    ratio = np.log2(dds.obs["size_factors"].to_numpy() / visits.loc[samples, "library_factor"])
    return float(np.polyfit(factor - factor.mean(), ratio - ratio.mean(), 1)[0])


R_CACHE: dict = {}


def with_r(frame: pd.DataFrame, adata, fit, folder: Path) -> pd.DataFrame:
    """``frame`` with R DESeq2's statistic, p-value and dispersions of the same counts."""
    from ifnsig.data import raw_counts

    key = (str(folder), fit.formula)
    if key not in R_CACHE:
        sub = adata[fit.samples]
        counts = pd.DataFrame(
            np.asarray(raw_counts(sub)).T, index=sub.var_names, columns=sub.obs_names
        )
        counts.to_csv(folder / "counts.tsv", sep="\t")
        sub.obs[["subject", "timepoint"]].astype(str).to_csv(folder / "meta.tsv", sep="\t")
        (folder / "deseq2.R").write_text(R_SCRIPT)
        subprocess.run(["Rscript", str(folder / "deseq2.R"), str(folder)], check=True)
        r = pd.read_csv(folder / "r_results.tsv", sep="\t")
        prior, variance = (folder / "r_prior.txt").read_text().split()
        R_CACHE[key] = r.assign(r_prior_var=float(prior), r_log_residual_sd=float(variance) ** 0.5)
    r = R_CACHE[key]
    r = r[r["contrast"] == frame["contrast"].iloc[0]].drop(columns="contrast")
    return frame.merge(r, on="gene_id", how="left")


def rate(rows: pd.DataFrame, column: str, level: float) -> str:
    """Hits / tests (rate; at p < 0.001 its 95% interval resampling cohorts, as the
    calibration benchmark's)."""
    tested = rows[rows[column].notna()]
    per = (tested[column] < level).groupby(tested["cohort"]).agg(hits="sum", trials="size")
    hits, trials = int(per["hits"].sum()), int(per["trials"].sum())
    text = f"{hits}/{trials} ({100 * hits / max(trials, 1):.3f}%"
    if level == 0.001 and len(per) > 1:
        low, high = load_calibration().cluster_interval(per)
        text += f", {100 * low:.3f}-{100 * high:.3f}"
    return text + ")"


def summary(rows: pd.DataFrame, visit_sd: float) -> str:
    """The null rates by kind of gene and dispersion, and the small p-values themselves."""
    lines = []
    rows = rows.assign(ifn_driven=rows["ifn_loading"] != 0)
    groups = [("every gene", rows)] + [
        ("IFN-driven genes" if driven else "other genes", group)
        for driven, group in rows.groupby("ifn_driven")
    ]
    for label, group in groups:
        lines.append(f"{label}, {len(group)} tests:")
        for column, name in [
            ("p_normal", "normal reference"),
            ("p_t", "t reference (the workflow's fit)"),
            ("p_t_genewise", "t, gene-wise dispersions (no prior)"),
            ("p_t_effective", "t, effective simulated dispersions"),
            ("p_t_effective_normalized", "t, effective dispersions after size factors"),
            ("r_pvalue", "R DESeq2 1.38.3, useT"),
        ]:
            if column in group:
                cells = "; ".join(f"p < {lv}: {rate(group, column, lv)}" for lv in LEVELS)
                lines.append(f"  {name}: {cells}")
        tested = group["p_t"].notna()
        normalized = "effective_normalized" if "effective_normalized" in group else "effective"
        log2 = np.log2(group.loc[tested, ["genewise", "effective", normalized, "dispersion"]])
        lines.append(
            "  log2 medians: gene-wise / effective "
            f"{(log2['genewise'] - log2['effective']).median():+.3f}, gene-wise / effective "
            f"after size factors {(log2['genewise'] - log2[normalized]).median():+.3f}, "
            f"final / effective {(log2['dispersion'] - log2['effective']).median():+.3f}, "
            f"MAP / gene-wise "
            f"{np.log2(group['map'] / group['genewise'])[tested].median():+.3f}; "
            f"outliers (gene-wise kept) {int(group.loc[tested, 'outlier'].sum())} of "
            f"{int(tested.sum())}"
        )
    driven = rows[rows["ifn_driven"] & rows["p_t"].notna()]
    if visit_sd and len(driven):
        bins = pd.cut(driven["ifn_loading"], [0, 1.5, 2.25, 3, 5])
        gap = np.log2(driven["genewise"] / driven["effective"]).groupby(bins, observed=True)
        lines.append(
            "IFN-driven genes, gene-wise / effective dispersion (log2 median) by loading: "
            + ", ".join(f"{b.left:g}-{b.right:g}: {v:+.3f}" for b, v in gap.median().items())
        )
        slopes = rows.groupby("cohort")["size_factor_visit"].first()
        lines.append(
            "log2 size factors per unit of visit factor, over cohorts: median "
            f"{slopes.median():.3f} ({slopes.min():.3f} to {slopes.max():.3f})"
        )
    if "r_pvalue" in rows:
        both = rows["p_t"].notna() & rows["r_pvalue"].notna()
        rel = np.abs(rows.loc[both, "p_t"] / rows.loc[both, "r_pvalue"] - 1)
        disp = np.abs(rows.loc[both, "dispersion"] / rows.loc[both, "r_dispersion"] - 1)
        small = (rows["p_t"] < 0.001) | (rows["r_pvalue"] < 0.001)
        lines.append(
            f"R vs workflow on {int(both.sum())} tests: p-value relative difference median "
            f"{rel.median():.2g}, largest {rel.max():.2g}; final dispersion median "
            f"{disp.median():.2g}, largest {disp.max():.2g}; the same outlier flag for "
            f"{(rows['outlier'] == rows['r_outlier'].astype(bool))[both].mean():.1%}; "
            f"p < 0.001 in one only: {int((small & ((rows['p_t'] < 0.001) != (rows['r_pvalue'] < 0.001))).sum())}; "  # noqa: E501
            f"tested in one only: {int((rows['p_t'].notna() != rows['r_pvalue'].notna()).sum())}"
        )
    hits = rows[rows["p_t"] < 0.001]
    per = hits.groupby(["cohort", "contrast"]).size()
    lines.append(
        f"{len(hits)} tests at t p < 0.001 in {len(per)} of "
        f"{rows[['cohort', 'contrast']].drop_duplicates().shape[0]} contrasts "
        f"(most in one contrast: {per.max() if len(per) else 0})"
    )
    columns = ["cohort", "contrast", "gene_id", "role", "ifn_loading", "base_mean", "min_count",
               "simulated", "effective", "genewise", "trend", "map", "dispersion", "outlier",
               "cooks_replaced", "p_t", "p_t_genewise", "p_t_effective", "visit_shift"]  # fmt: skip
    columns += [c for c in ("r_pvalue", "r_dispersion") if c in rows]
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        lines.append(hits[columns].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohorts", type=int, default=20, help="null cohorts")
    parser.add_argument("--seed", type=int, default=1, help="first seed")
    parser.add_argument("--genes", type=int, default=600)
    parser.add_argument("--patients", type=int, default=25)
    parser.add_argument("--r", action="store_true", help="also R DESeq2 on the same counts")
    parser.add_argument("--out", type=Path, default=None, help="rows (TSV)")
    parser.add_argument("--summary-only", action="store_true", help="read --out, print")
    calibration = load_calibration()
    calibration.add_visit_option(parser)
    args = parser.parse_args(argv)
    if args.summary_only:
        print(summary(pd.read_csv(args.out, sep="\t"), args.ifn_visit_sd))
        return
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    frames = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in range(args.seed, args.seed + args.cohorts):
            t0 = time.perf_counter()
            folder = Path(workdir) / f"null_{seed}"
            frames.append(trace_cohort(seed, args, calibration, folder, args.r))
            print(f"null cohort {seed}: {time.perf_counter() - t0:.0f} s ({load()})", flush=True)
    rows = pd.concat(frames, ignore_index=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.out, sep="\t", index=False, float_format="%.6g")
    minutes = (time.perf_counter() - start) / 60
    print(
        f"{args.cohorts} null cohorts, {args.genes} genes, IFN visit SD {args.ifn_visit_sd:g}: "
        f"{minutes:.1f} min ({load()})"
    )
    print(summary(rows, args.ifn_visit_sd))


if __name__ == "__main__":
    main()
