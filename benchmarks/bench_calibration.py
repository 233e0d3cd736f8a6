"""Calibration of every p-value of the workflow on null cohorts, and power on planted ones.

Each cohort comes from the demo's simulator (``ifnsig.simulate``, the same generator as
``python -m ifnsig.simulate``): 25 patients at baseline, month 3 and month 6 and 12 controls,
with ``--genes`` genes. Null cohorts (``CohortSpec(null=True)``, ``--null``) plant nothing
over time: no IFN fall, no treatment genes, clinical courses unlinked to expression (the
IFN-high patients still differ from controls at baseline). Planted cohorts are the default
simulator, the demo with another seed (its treatment genes scaled to the same share of the
genes as the demo's 300 of 15,000). ``--ifn-visit-sd SD`` gives both kinds a visit factor
shared by the IFN genes (``CohortSpec(ifn_visit_sd=SD)``: each sample's IFN activity moves
around its subject's level by a normal draw of that SD, with mean 0, so a null cohort still
plants no change): in real blood the IFN genes fluctuate together from visit to visit, which
is what gene-label permutation (prerank) does not allow for. SD 0.15 moves most ISGs by
0.22 to 0.45 log2 and the six strongest by 0.45 to 0.68, about the 0.3 log2 shared by the
set of ``bench_set_correlation.py``.

The workflow runs on each cohort as its rules run it: the same stage functions
(``ifnsig.stages``), each given exactly its rule's settings (``ifnsig.settings``) and the
rule's input and output paths, in the rules' order: ``build_anndata``, ``geneset_coverage``,
``filter_genes``, ``normalize``, ``score_ifn``, ``call_responses``, ``clinical_linkage``,
``differential_expression``, ``enrichment`` per contrast. They are called in one process
rather than through ``snakemake``: a snakemake run starts a Python for every job (about 5 s
of imports each, half the time of a 3,000-gene cohort), and the rules left out (QC,
matrices, DE plots, the annotated cohort) compute no p-value. Two settings that change no
p-value are turned down for speed: ``linkage.bootstrap: 0`` (bootstrap intervals only) and
``de.shrink_max_coefficients: 0`` (apeGLM-shrunk fold changes only). DE p-values with the t
reference are computed from the same fit, as ``de.wald_distribution: t`` computes them
(``wald_t_pvalues`` on the Wald statistic with samples minus coefficients degrees of
freedom; independent filtering then redone on them). For shorter runs, ``--no-plots`` builds
the figures without writing them out (a PNG is a third of a small cohort's time and holds no
p-value), and ``--signatures`` / ``--methods`` score fewer signatures and methods than the
repository's configuration (fewer rows per cohort, the same tests).

Measured, per kind of cohort (null: false-positive rates; planted: power):

- ``mixed_models``: rows at p < 0.05, primary (within-patient, CR2), model-based
  (``pvalue_model``) and between; power on the measures the simulator links to the IFN fall;
- ``set tests`` and ``prerank``: contrasts with a gene set at FDR < 0.05 (any set, and one of
  the shipped type I IFN sets); power: the shipped IFN sets found falling;
- ``DE``: null genes at p < 0.001 and p < 0.05 with the normal and t references; power:
  planted genes at padj < 0.05 and the share of false calls among the calls;
- ``paired tests``, ``correlations``, ``baseline prediction``: rows at p < 0.05.

Rates of rows are pooled over cohorts; their 95% intervals resample cohorts (rows of one
cohort are correlated). Shares of contrasts have Clopper-Pearson intervals. Per-cohort
figures go to ``benchmarks/out/<summary>_cohorts.tsv``, the summary to
``benchmarks/calibration.tsv`` (``benchmarks/calibration_ifn_visits.tsv`` with a visit
factor; ``--summary`` for another); ``--markdown`` prints the README tables from it.

Example
-------
python benchmarks/bench_calibration.py --null 20 --planted 10 --genes 3000
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SUMMARY = HERE / "calibration.tsv"
VISITS_SUMMARY = HERE / "calibration_ifn_visits.tsv"  # summary_path(SUMMARY, SD > 0)
ALPHA = 0.05
# Clinical measures the simulator moves with the IFN fall (the steroid dose follows the
# responder taper, not the fall).
LINKED = ["CMAS", "MMT8", "CAT_BM_activity", "physician_global", "CK"]
DEMO_GENES, DEMO_TREATMENT_GENES = 15000, 300
# Seconds spent in each stage, over all cohorts of a run.
TIMES: dict[str, float] = {}


def cohort_spec(kind: str, seed: int, genes: int, patients: int = 25, ifn_visit_sd: float = 0.0):
    from ifnsig.simulate import CohortSpec

    treatment = max(10, round(DEMO_TREATMENT_GENES * genes / DEMO_GENES))
    return CohortSpec(
        n_patients=patients,
        n_genes=genes,
        n_treatment_genes=treatment,
        seed=seed,
        null=kind == "null",
        ifn_visit_sd=ifn_visit_sd,
    )


def project_config(folder: Path, permutations: int | None, overrides=None) -> dict:
    """The repository's configuration with the inputs in ``folder/inputs``; ``overrides``
    (a function of the config) may change it further."""
    from ifnsig.validation import validate_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if overrides is not None:
        overrides(config)
    config.update(
        counts=str(folder / "inputs" / "counts.tsv.gz"),
        samples=str(folder / "inputs" / "samples.tsv"),
        clinical=str(folder / "inputs" / "clinical.tsv"),
    )
    config["linkage"]["bootstrap"] = 0
    config["de"]["shrink_max_coefficients"] = 0
    if permutations is not None:
        config["enrichment"]["set_test_permutations"] = permutations
    return validate_config(copy.deepcopy(config))


def run_stages(folder: Path, config: dict, threads: int, stages_wanted: set[str]) -> dict:
    """The workflow's stages in-process, as their rules run them; returns the output paths."""
    from ifnsig import stages
    from ifnsig.de import de_tables
    from ifnsig.reference import FILES as REFERENCE_FILES
    from ifnsig.settings import (
        aliases_file,
        enrichment_gene_set_files,
        score_gene_set_files,
        sheet_files,
        stage_settings,
    )

    def out(path: str) -> str:
        full = folder / path
        full.parent.mkdir(parents=True, exist_ok=True)
        return str(full)

    def run(name: str, inputs: dict, outputs: dict) -> dict:
        settings = stage_settings(config, name)
        start = time.perf_counter()
        getattr(stages, name)(inputs=inputs, outputs=outputs, settings=settings, threads=threads)
        TIMES[name] = TIMES.get(name, 0.0) + time.perf_counter() - start
        return outputs

    data = run(
        "build_anndata",
        sheet_files(config),
        {"counts": out("results/data/counts.h5ad"), "samples": out("results/data/samples.tsv")},
    )
    gene_sets, aliases = score_gene_set_files(config), aliases_file()
    coverage = run(
        "geneset_coverage",
        {"counts": data["counts"], "gene_sets": gene_sets, "aliases": aliases},
        {"coverage": out("results/scores/geneset_coverage.tsv")},
    )
    filtered = run(
        "filter_genes",
        {"counts": data["counts"]},
        {"filtered": out("results/data/filtered_counts.h5ad")},
    )
    normalized = run(
        "normalize",
        {"filtered": filtered["filtered"]},
        {"normalized": out("results/data/normalized.h5ad")},
    )
    scores = run(
        "score_ifn",
        {
            "normalized": normalized["normalized"],
            "coverage": coverage["coverage"],
            "gene_sets": gene_sets,
            "aliases": aliases,
        },
        {
            **{
                k: out(f"results/scores/{k}.tsv")
                for k in ["scores", "obs", "agreement", "type_contrast", "mixture_fits"]
            },
            **{
                f"reference_{k}": out(f"results/scores/reference/{name}")
                for k, name in REFERENCE_FILES.items()
            },
            **{
                k: out(f"results/plots/scores/{k}.png")
                for k in ["over_time", "heatmap", "distributions", "type1_vs_type2"]
            },
        },
    )
    clinical = {"clinical": config["clinical"]}
    responses = run(
        "call_responses",
        {**clinical, "samples": data["samples"]},
        {k: out(f"results/clinical/{k}.tsv") for k in ["changes", "response"]},
    )
    tables = [
        "score_changes", "paired_tests", "correlations", "baseline_prediction", "mixed_models",
    ]  # fmt: skip
    linkage = run(
        "clinical_linkage",
        {
            "scores": scores["scores"],
            "samples": data["samples"],
            "changes": responses["changes"],
            "response": responses["response"],
        },
        {
            **{k: out(f"results/clinical/{k}.tsv") for k in tables},
            **{
                k: out(f"results/plots/clinical/{k}.png")
                for k in ["change_scatter", "trajectories", "roc"]
            },
        },
    )
    paths = {**linkage, "scores": scores["scores"]}
    if "de" not in stages_wanted:
        return paths
    names = de_tables(config)
    de = run(
        "differential_expression",
        {"filtered": filtered["filtered"]},
        {
            **{n: out(f"results/de/{n}.tsv") for n in names},
            **{f"{n}.samples": out(f"results/de/{n}.samples.tsv") for n in names},
            "design_checks": out("results/de/design_checks.tsv"),
        },
    )
    paths.update(de)
    for name in names:
        enriched = run(
            "enrichment",
            {
                "de": de[name],
                "samples": de[f"{name}.samples"],
                "normalized": normalized["normalized"],
                "gene_sets": enrichment_gene_set_files(config),
                "aliases": aliases,
            },
            {
                "set_tests": out(f"results/enrichment/{name}.set_tests.tsv"),
                "prerank": out(f"results/enrichment/{name}.prerank.tsv"),
                "ora": out(f"results/enrichment/{name}.ora.tsv"),
                "dotplot": out(f"results/plots/enrichment/{name}.dotplot.png"),
                "running_scores": out(f"results/plots/enrichment/{name}.running.png"),
            },
        )
        paths.update({f"{name}.{k}": v for k, v in enriched.items()})
    return paths


def read(path: str) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def rows_below(table: pd.DataFrame, column: str = "pvalue") -> tuple[int, int]:
    """Rows with a p-value, and those below ``ALPHA``."""
    values = table[column].dropna()
    return int((values < ALPHA).sum()), len(values)


def measure_cohort(kind: str, seed: int, paths: dict, config: dict, truth: pd.DataFrame) -> list:
    """One record per (cohort, metric): hits and trials (rows, genes or contrasts)."""
    from ifnsig.de import de_tables
    from ifnsig.de.deseq2_compat import independent_filtering, wald_t_pvalues
    from ifnsig.genesets import SHIPPED_GMT, ifn_sets, load_gene_sets

    records = []

    def add(metric: str, hits: float, trials: float, value: float = np.nan) -> None:
        records.append(
            {"kind": kind, "seed": seed, "metric": metric, "hits": hits, "trials": trials,
             "value": value}
        )  # fmt: skip

    type1 = ["RICE2013_6", "NIH28", "FENG2006_5"]
    mixed = read(paths["mixed_models"])
    correlations = read(paths["correlations"])
    if kind == "planted":
        mixed = mixed[mixed["signature"].isin(type1) & mixed["measure"].isin(LINKED)]
        correlations = correlations[
            correlations["signature"].isin(type1) & correlations["measure"].isin(LINKED)
        ]
    for column, metric in [
        ("pvalue", "mixed: within, CR2 (primary)"),
        ("pvalue_model", "mixed: within, model-based"),
        ("pvalue_between", "mixed: between, CR2"),
    ]:
        add(metric, *rows_below(mixed, column))
    paired = read(paths["paired_tests"])
    if kind == "planted":
        paired = paired[paired["signature"].isin(type1)]
    add("paired score test (Wilcoxon)", *rows_below(paired))
    add("change correlations (Spearman)", *rows_below(correlations))
    prediction = read(paths["baseline_prediction"])
    for (predictor, analysis), group in prediction.groupby(["predictor", "analysis"]):
        if kind == "planted":
            group = group[group["signature"].isin(type1)]
        add(f"baseline prediction: {predictor}, {analysis}", *rows_below(group))
        if analysis == "mann_whitney":
            add(f"AUC in the stated direction: {predictor}", np.nan, np.nan,
                float(group["estimate"].mean()))  # fmt: skip
    if "month6_vs_baseline" not in paths:
        return records

    shipped_ifn = set(ifn_sets(load_gene_sets(SHIPPED_GMT)))
    planted = truth.set_index("gene_id")["planted_de"].astype(bool)
    for name in de_tables(config):
        de = read(paths[name])
        fitted = read(paths[f"{name}.samples"])
        # ~ subject + timepoint: one coefficient per subject and per non-reference level.
        df = len(fitted) - fitted["subject"].nunique() - (fitted["timepoint"].nunique() - 1)
        tested = de["pvalue"].notna()
        p_t = de["pvalue"].copy()
        p_t[tested] = wald_t_pvalues(de.loc[tested, "stat"].to_numpy(), df)
        padj_t, _ = independent_filtering(de["baseMean"], p_t, config["de"]["alpha"])
        null = ~de["gene_id"].map(planted).fillna(False).to_numpy(bool)
        for label, p, padj in [("normal", de["pvalue"], de["padj"]), ("t", p_t, padj_t)]:
            p = pd.Series(np.asarray(p, float))
            padj = pd.Series(np.asarray(padj, float))
            keep = p.notna().to_numpy() & null
            for level in (0.001, 0.05):
                add(f"DE {label}: null genes at p < {level}", int((p[keep] < level).sum()),
                    int(keep.sum()))  # fmt: skip
            if kind == "planted":
                called = (padj < ALPHA).to_numpy()
                add(f"DE {label}: planted genes at padj < 0.05", int((called & ~null).sum()),
                    int((~null).sum()))  # fmt: skip
                add(f"DE {label}: false calls among padj < 0.05", int((called & null).sum()),
                    int(called.sum()))  # fmt: skip
        for method, key in [("set tests", "set_tests"), ("prerank", "prerank")]:
            table = read(paths[f"{name}.{key}"])
            significant = table[table["fdr"] < ALPHA]
            add(f"{method}: contrasts with any set at FDR < 0.05", int(len(significant) > 0), 1)
            ifn = significant[significant["gene_set"].isin(shipped_ifn)]
            add(f"{method}: contrasts with an IFN set at FDR < 0.05", int(len(ifn) > 0), 1)
            if kind == "planted":
                effect = "estimate" if key == "set_tests" else "nes"
                rows = table[table["gene_set"].isin(type1)]
                found = (rows["fdr"] < ALPHA) & (rows[effect] < 0)
                add(f"{method}: type I IFN signatures found falling", int(found.sum()), len(rows))
    return records


def scoring(args: argparse.Namespace):
    """The override of the scored signatures and methods the command line asks for, if any."""
    if not (args.signatures or args.methods):
        return None

    def override(config: dict) -> None:
        for key in ("signatures", "methods"):
            if getattr(args, key):
                config["scores"][key] = list(getattr(args, key))

    return override


def skip_figures() -> None:
    """Figures are built but not written out: each output gets an empty file."""
    from ifnsig import plots

    def close(fig, path) -> None:
        plots.plt.close(fig)
        Path(path).touch()

    plots._save = close


def run_cohort(kind, seed, args, workdir: Path, overrides=None) -> list[dict]:
    """Simulate one cohort, run the workflow's stages on it and measure its tests."""
    from ifnsig.simulate import simulate_cohort

    overrides = overrides or scoring(args)

    folder = workdir / f"{kind}_{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    spec = cohort_spec(kind, seed, args.genes, args.patients, args.ifn_visit_sd)
    cohort = simulate_cohort(spec)
    cohort.write(folder / "inputs")
    config = project_config(folder, args.set_permutations, overrides)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = run_stages(folder, config, args.threads, set(args.stages))
    seconds = time.perf_counter() - start
    records = measure_cohort(kind, seed, paths, config, cohort.truth_genes)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    for record in records:
        record["seconds"] = round(seconds, 1)
    return records


def cluster_interval(frame: pd.DataFrame, seed: int = 0, n: int = 2000) -> tuple[float, float]:
    """95% percentile interval of a pooled rate, resampling cohorts."""
    rng = np.random.default_rng(seed)
    hits, trials = frame["hits"].to_numpy(float), frame["trials"].to_numpy(float)
    if len(frame) < 2 or trials.sum() == 0:
        return np.nan, np.nan
    picks = rng.integers(0, len(frame), (n, len(frame)))
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = hits[picks].sum(axis=1) / trials[picks].sum(axis=1)
    return tuple(np.nanpercentile(rates, [2.5, 97.5]))


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    rows = []

    def total(values: pd.Series) -> float:
        return values.sum(min_count=1)

    per_cohort = records.groupby(["kind", "metric", "seed"], sort=False, as_index=False).agg(
        hits=("hits", total), trials=("trials", total), value=("value", "mean")
    )
    for (kind, metric), group in per_cohort.groupby(["kind", "metric"], sort=False):
        if group["trials"].isna().all():
            rows.append({"kind": kind, "metric": metric, "cohorts": len(group),
                         "hits": np.nan, "trials": np.nan, "rate": group["value"].mean(),
                         "ci_low": np.nan, "ci_high": np.nan})  # fmt: skip
            continue
        hits, trials = group["hits"].sum(), group["trials"].sum()
        if "contrasts" in metric:
            low, high = stats.binomtest(int(hits), int(trials)).proportion_ci(0.95)
        else:
            low, high = cluster_interval(group)
        rows.append({"kind": kind, "metric": metric, "cohorts": len(group), "hits": hits,
                     "trials": trials, "rate": hits / trials if trials else np.nan,
                     "ci_low": low, "ci_high": high})  # fmt: skip
    return pd.DataFrame(rows)


def read_summary(path: Path) -> pd.DataFrame:
    """A summary written by :func:`main` ("null" in ``kind`` is a word, not a missing value)."""
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])


def cell(row) -> str:
    """A rate with its 95% interval and counts (a mean, such as an AUC, alone)."""
    if pd.isna(row["trials"]):
        return f"{row['rate']:.2f}"
    scale = 100.0
    digits = 2 if row["rate"] < 0.01 else 1
    interval = (
        ""
        if pd.isna(row["ci_low"])
        else f"{scale * row['ci_low']:.{digits}f}-{scale * row['ci_high']:.{digits}f}; "
    )
    return f"{scale * row['rate']:.{digits}f} % ({interval}{int(row['hits'])}/{int(row['trials'])})"


# The README's table: per test, its metrics on null cohorts and on planted ones (several
# metrics in a cell are joined by " / "; none: nothing planted to find).
SIDE_BY_SIDE = [
    ("mixed models, primary `pvalue` (within-patient, CR2 SE)",
     ["mixed: within, CR2 (primary)"], ["mixed: within, CR2 (primary)"]),
    ("mixed models, `pvalue_model` (model-based SE)",
     ["mixed: within, model-based"], ["mixed: within, model-based"]),
    ("mixed models, `pvalue_between` (patient means)", ["mixed: between, CR2"], []),
    ("paired score test (Wilcoxon)",
     ["paired score test (Wilcoxon)"], ["paired score test (Wilcoxon)"]),
    ("change correlations (Spearman)",
     ["change correlations (Spearman)"], ["change correlations (Spearman)"]),
    ("baseline prediction, score change: Mann-Whitney / logistic",
     ["baseline prediction: score_change, mann_whitney",
      "baseline prediction: score_change, logistic"],
     ["baseline prediction: score_change, mann_whitney",
      "baseline prediction: score_change, logistic"]),
    ("AUC of the score change in its stated direction, mean",
     ["AUC in the stated direction: score_change"],
     ["AUC in the stated direction: score_change"]),
    ("baseline prediction, baseline score: Mann-Whitney / logistic",
     ["baseline prediction: baseline_score, mann_whitney",
      "baseline prediction: baseline_score, logistic"], []),
    ("DE, normal / t reference: null genes at p < 0.001; planted genes at padj < 0.05",
     ["DE normal: null genes at p < 0.001", "DE t: null genes at p < 0.001"],
     ["DE normal: planted genes at padj < 0.05", "DE t: planted genes at padj < 0.05"]),
    ("DE, normal / t reference: null genes at p < 0.05; false calls among padj < 0.05",
     ["DE normal: null genes at p < 0.05", "DE t: null genes at p < 0.05"],
     ["DE normal: false calls among padj < 0.05", "DE t: false calls among padj < 0.05"]),
    ("set tests: contrasts with any set / an IFN set at FDR < 0.05; type I sets found falling",
     ["set tests: contrasts with any set at FDR < 0.05",
      "set tests: contrasts with an IFN set at FDR < 0.05"],
     ["set tests: type I IFN signatures found falling"]),
    ("prerank: contrasts with any set / an IFN set at FDR < 0.05; type I sets found falling",
     ["prerank: contrasts with any set at FDR < 0.05",
      "prerank: contrasts with an IFN set at FDR < 0.05"],
     ["prerank: type I IFN signatures found falling"]),
]  # fmt: skip


def side_by_side(summary: pd.DataFrame) -> str:
    """One row per test: its rate on null cohorts beside its power on planted ones."""
    rows = summary.set_index(["kind", "metric"])

    def cells(kind: str, metrics: list[str]) -> str:
        found = [cell(rows.loc[(kind, m)]) for m in metrics if (kind, m) in rows.index]
        return " / ".join(found) if found else "none planted"

    counts = summary.groupby("kind")["cohorts"].max()
    lines = [
        f"| test | null: {int(counts.get('null', 0))} cohorts, at p < 0.05 unless stated "
        f"(95% CI; hits/trials) | planted: {int(counts.get('planted', 0))} cohorts (power) |",
        "|---|---|---|",
    ]
    for label, null, planted in SIDE_BY_SIDE:
        lines.append(f"| {label} | {cells('null', null)} | {cells('planted', planted)} |")
    return "\n".join(lines)


def markdown(summary: pd.DataFrame) -> str:
    """Every metric: observed vs nominal on null cohorts, power on planted ones."""
    lines = []
    for kind, title in [("null", "null cohorts"), ("planted", "planted (demo-like) cohorts")]:
        part = summary[summary["kind"] == kind]
        if part.empty:
            continue
        header = "false-positive rate" if kind == "null" else "rate (power)"
        lines += [f"| test ({title}, {int(part['cohorts'].max())} cohorts) | {header} |",
                  "|---|---|"]  # fmt: skip
        lines += [f"| {row['metric']} | {cell(row)} |" for _, row in part.iterrows()]
        lines.append("")
    return "\n".join(lines)


def add_visit_option(parser: argparse.ArgumentParser) -> None:
    """``--ifn-visit-sd``, the same option in every calibration benchmark."""
    parser.add_argument(
        "--ifn-visit-sd", type=float, default=0.0, metavar="SD",
        help="SD of a visit factor shared by the IFN genes, in null and planted cohorts "
        "(ifnsig.simulate's; default 0: none)",
    )  # fmt: skip


def summary_path(default: Path, ifn_visit_sd: float) -> Path:
    """A benchmark's summary table: ``default``, or ``<stem>_ifn_visits.tsv`` beside it for
    cohorts with a visit factor (their rates are kept apart)."""
    return default.with_name(f"{default.stem}_ifn_visits.tsv") if ifn_visit_sd else default


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (also what :func:`run_cohort` reads its options from)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--null", type=int, default=20, help="null cohorts")
    parser.add_argument("--planted", type=int, default=10, help="planted (demo-like) cohorts")
    parser.add_argument("--genes", type=int, default=3000)
    parser.add_argument("--patients", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1, help="first seed of each kind")
    add_visit_option(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--set-permutations", type=int, default=None, help="set test arrangements (config's)"
    )
    parser.add_argument(
        "--stages", nargs="+", default=["clinical", "de"], choices=["clinical", "de"],
        help="clinical alone skips DE and enrichment",
    )  # fmt: skip
    parser.add_argument("--signatures", nargs="+", help="scored signatures (config's)")
    parser.add_argument("--methods", nargs="+", help="scoring methods (config's)")
    parser.add_argument("--no-plots", action="store_true", help="do not write the figures")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep each cohort's results")
    parser.add_argument("--summary", type=Path, default=None, help="summary table to write or read")
    parser.add_argument("--markdown", action="store_true", help="print the summary's tables")
    args = parser.parse_args(argv)
    if args.summary is None:
        args.summary = summary_path(SUMMARY, args.ifn_visit_sd)
    return args


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    if args.markdown:
        summary = read_summary(args.summary)
        print(side_by_side(summary) + "\n\n" + markdown(summary))
        return
    logging.basicConfig(level=logging.ERROR)
    if args.no_plots:
        skip_figures()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ifnsig_calibration_"))
    start = time.perf_counter()
    records = []
    plan = [("null", args.seed + i) for i in range(args.null)]
    plan += [("planted", 1000 + args.seed + i) for i in range(args.planted)]
    for kind, seed in plan:
        records += run_cohort(kind, seed, args, workdir)
        print(f"{kind} cohort seed {seed}: {records[-1]['seconds']:.0f} s", flush=True)
    table = pd.DataFrame(records)
    minutes = (time.perf_counter() - start) / 60
    summary = summarize(table)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    print(
        f"\n{args.null} null and {args.planted} planted cohorts, {args.genes} genes, "
        f"IFN visit SD {args.ifn_visit_sd:g}, {minutes:.0f} min ({stamp})\n"
    )
    print(markdown(summary))
    print("seconds per stage, all cohorts:", {k: round(v) for k, v in TIMES.items()})
    cohorts = HERE / "out" / f"{args.summary.stem}_cohorts.tsv"
    cohorts.parent.mkdir(exist_ok=True)
    table.to_csv(cohorts, sep="\t", index=False)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    summary.assign(date=stamp, genes=args.genes, minutes=round(minutes, 1), command=command).to_csv(
        args.summary, sep="\t", index=False, float_format="%.6g"
    )


if __name__ == "__main__":
    main()
