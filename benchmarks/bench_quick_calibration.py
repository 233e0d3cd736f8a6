"""Calibration of the clinical linkage and the set tests on many cohorts, in a few minutes.

``bench_calibration.py`` runs every stage on each cohort; most of a small cohort's time is
the VST fit and the DE, so tens of cohorts do not fit in a short run. Here each cohort (the
same simulator and specs: null ``CohortSpec(null=True)`` or planted, 25 patients at three
timepoints, ``--genes`` genes) goes through:

- IFN scores by the median fold change (``scores.score_samples``, the ``score_ifn`` stage's
  call) on DESeq2-normalized counts, which is all that method needs (no VST fit);
- the ``call_responses`` and ``clinical_linkage`` stages themselves, with their rules'
  settings (figures built but not written, ``linkage.bootstrap: 0``);
- the ``enrichment`` stage's set tests (its gene sets, its comparison of each DE table from
  the planned fit's samples, ``set_tests.set_tests``) on set scores of log2(normalized count
  + 1) instead of VST values (for well-expressed genes the VST is close to that log, as the
  DESeq2 vignette notes); prerank needs the DE and is left to ``bench_calibration.py``.

Rates are measured and summarized as ``bench_calibration.py`` does (its ``measure_cohort``
and ``summarize``); per-cohort figures go to ``benchmarks/out/quick_calibration_cohorts.tsv``,
the summary to ``benchmarks/quick_calibration.tsv``; ``--markdown`` prints its tables.
``--ifn-visit-sd SD`` gives every cohort the simulator's visit factor shared by the IFN
genes, as in ``bench_calibration.py`` (the same option, from there); its figures go to
``quick_calibration_ifn_visits.tsv`` and ``out/quick_calibration_ifn_visits_cohorts.tsv``.

Example
-------
python benchmarks/bench_quick_calibration.py --null 20 --planted 4 --genes 1000 (add
``--signatures RICE2013_6 NIH28`` for the README's run)
"""

from __future__ import annotations

import argparse
import importlib.util
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

HERE = Path(__file__).resolve().parent
SUMMARY = HERE / "quick_calibration.tsv"
TYPE1 = ["RICE2013_6", "NIH28", "FENG2006_5"]


def load_calibration():
    spec = importlib.util.spec_from_file_location(
        "bench_calibration", HERE / "bench_calibration.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def normalized_cohort(cohort, samples: pd.DataFrame):
    """Samples x genes DESeq2-normalized counts as an AnnData with the obs of the sheet."""
    import anndata as ad
    from pydeseq2.preprocessing import deseq2_norm

    counts = cohort.counts.T
    normalized, size_factors = deseq2_norm(counts.to_numpy())
    symbols = cohort.truth_genes.set_index("gene_id")["symbol"].reindex(counts.columns)
    adata = ad.AnnData(
        X=normalized.astype(float),
        obs=samples.set_index("sample", drop=False).loc[counts.index],
        var=pd.DataFrame({"symbol": symbols.astype(str).to_numpy()}, index=counts.columns),
    )
    adata.layers["normalized"] = adata.X
    adata.obs["size_factor"] = size_factors
    return adata


def write_scores(adata, config: dict, path: Path) -> None:
    """The ``score_ifn`` stage's scores table, median fold change only."""
    from ifnsig import genesets, scores
    from ifnsig.settings import aliases_file, score_gene_set_files

    chosen = config["scores"]
    matched, _ = genesets.matched_signatures(
        scores.scored_signatures(chosen),
        adata.var["symbol"],
        score_gene_set_files(config),
        aliases_file(),
        min_genes=chosen["min_genes"],
    )
    reference = scores.reference_mask(
        adata.obs, chosen["reference"], config["groups"]["control"], config["timepoints"][0]
    )
    table = scores.score_samples(
        adata,
        matched,
        ["median_fold_change"],
        reference,
        chosen["positivity_sd"],
        seed=config["seed"],
        reference_group=chosen["reference"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False)


def set_test_records(kind: str, seed: int, adata, samples, config: dict) -> list[dict]:
    """The set tests of every DE table, measured as ``bench_calibration.measure_cohort``."""
    from ifnsig import genesets, set_tests, stages
    from ifnsig.de import plan
    from ifnsig.enrichment import restrict_to
    from ifnsig.settings import aliases_file, enrichment_gene_set_files

    chosen = config["enrichment"]
    inputs = {"gene_sets": enrichment_gene_set_files(config)}
    symbols = adata.var["symbol"]
    sets = restrict_to(
        stages.enrichment_sets(inputs, config),
        set(symbols),
        genesets.read_aliases(aliases_file()),
    )
    values = pd.DataFrame(
        np.log2(adata.layers["normalized"] + 1.0), index=adata.obs_names, columns=adata.var_names
    )
    scores, sizes = set_tests.set_scores(
        values, symbols, sets, chosen["min_size"], chosen["max_size"]
    )
    shipped_ifn = set(genesets.ifn_sets(genesets.load_gene_sets(genesets.SHIPPED_GMT)))
    tables = plan.table_contrasts(config)
    sheet = samples.set_index("sample", drop=False)
    records = []

    def add(metric: str, hits: int, trials: int) -> None:
        records.append(
            {"kind": kind, "seed": seed, "metric": metric, "hits": hits, "trials": trials,
             "value": np.nan}
        )  # fmt: skip

    for fit in plan.plan_fits(sheet, config):
        fitted = plan.fitted_samples(fit, sheet).astype(str)
        for contrast in fit.contrasts:
            for name in plan.table_names(contrast):
                comparison = set_tests.comparison_for(*tables[name], fitted, config["timepoints"])
                table = set_tests.set_tests(
                    scores, sizes, comparison, chosen["set_test_permutations"], config["seed"]
                )
                significant = table[table["fdr"] < 0.05]
                add("set tests: contrasts with any set at FDR < 0.05", int(len(significant) > 0), 1)
                ifn = significant["gene_set"].isin(shipped_ifn).any()
                add("set tests: contrasts with an IFN set at FDR < 0.05", int(ifn), 1)
                if kind == "planted":
                    rows = table[table["gene_set"].isin(TYPE1)]
                    found = int(((rows["fdr"] < 0.05) & (rows["estimate"] < 0)).sum())
                    add("set tests: type I IFN signatures found falling", found, len(rows))
    return records


def run_cohort(kind: str, seed: int, args, workdir: Path, calibration) -> list[dict]:
    from ifnsig import stages
    from ifnsig.settings import stage_settings
    from ifnsig.simulate import simulate_cohort
    from ifnsig.validation import load_samples

    folder = workdir / f"{kind}_{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    spec = calibration.cohort_spec(kind, seed, args.genes, args.patients, args.ifn_visit_sd)
    cohort = simulate_cohort(spec)
    cohort.write(folder / "inputs")

    def override(config: dict) -> None:
        config["scores"]["methods"] = ["median_fold_change"]
        if args.signatures:
            config["scores"]["signatures"] = list(args.signatures)

    config = calibration.project_config(folder, args.set_permutations, override)
    start = time.perf_counter()
    samples = load_samples(config).reset_index(drop=True)
    results = folder / "results"
    paths = {"samples": results / "data" / "samples.tsv", "scores": results / "scores.tsv"}
    paths["samples"].parent.mkdir(parents=True, exist_ok=True)
    samples.to_csv(paths["samples"], sep="\t", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = normalized_cohort(cohort, samples)
        write_scores(adata, config, paths["scores"])
        clinical = {k: results / "clinical" / f"{k}.tsv" for k in ["changes", "response"]}
        clinical["changes"].parent.mkdir(parents=True, exist_ok=True)
        stages.call_responses(
            {"clinical": config["clinical"], "samples": str(paths["samples"])},
            {k: str(v) for k, v in clinical.items()},
            stage_settings(config, "call_responses"),
        )
        tables = ["score_changes", "paired_tests", "correlations", "baseline_prediction",
                  "mixed_models"]  # fmt: skip
        figures = ["change_scatter", "trajectories", "roc"]
        outputs = {k: str(results / "clinical" / f"{k}.tsv") for k in tables}
        outputs.update({k: str(results / f"{k}.png") for k in figures})
        stages.clinical_linkage(
            {
                "scores": str(paths["scores"]),
                "samples": str(paths["samples"]),
                **{k: str(v) for k, v in clinical.items()},
            },
            outputs,
            stage_settings(config, "clinical_linkage"),
        )
        records = calibration.measure_cohort(kind, seed, outputs, config, cohort.truth_genes)
        records += set_test_records(kind, seed, adata, samples, config)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    for record in records:
        record["seconds"] = round(seconds, 1)
    return records


def arguments(argv: list[str] | None = None, calibration=None) -> argparse.Namespace:
    """The command line; ``summary`` is the summary table to write or read."""
    calibration = calibration or load_calibration()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--null", type=int, default=20, help="null cohorts")
    parser.add_argument("--planted", type=int, default=5, help="planted (demo-like) cohorts")
    parser.add_argument("--genes", type=int, default=3000)
    parser.add_argument("--patients", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1, help="first seed of each kind")
    parser.add_argument("--signatures", nargs="+", help="scored signatures (config's)")
    parser.add_argument("--set-permutations", type=int, default=999, help="set test arrangements")
    parser.add_argument("--markdown", action="store_true", help="print the summary's tables")
    calibration.add_visit_option(parser)
    args = parser.parse_args(argv)
    args.summary = calibration.summary_path(SUMMARY, args.ifn_visit_sd)
    return args


def main(argv: list[str] | None = None) -> None:
    calibration = load_calibration()
    args = arguments(argv, calibration)
    if args.markdown:
        print(calibration.markdown(calibration.read_summary(args.summary)))
        return
    logging.basicConfig(level=logging.ERROR)
    calibration.skip_figures()
    workdir = Path(tempfile.mkdtemp(prefix="ifnsig_quick_calibration_"))
    start = time.perf_counter()
    records = []
    plan = [("null", args.seed + i) for i in range(args.null)]
    plan += [("planted", 1000 + args.seed + i) for i in range(args.planted)]
    for kind, seed in plan:
        records += run_cohort(kind, seed, args, workdir, calibration)
        print(f"{kind} cohort seed {seed}: {records[-1]['seconds']:.0f} s", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    minutes = (time.perf_counter() - start) / 60
    table = pd.DataFrame(records)
    cohorts = HERE / "out" / f"{args.summary.stem}_cohorts.tsv"
    cohorts.parent.mkdir(exist_ok=True)
    table.to_csv(cohorts, sep="\t", index=False)
    summary = calibration.summarize(table)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    print(
        f"\n{args.null} null and {args.planted} planted cohorts, {args.genes} genes, "
        f"IFN visit SD {args.ifn_visit_sd:g}, {minutes:.1f} min ({stamp})\n"
    )
    print(calibration.markdown(summary))
    command = " ".join(sys.argv[1:] if argv is None else argv)
    summary.assign(date=stamp, genes=args.genes, minutes=round(minutes, 1), command=command).to_csv(
        args.summary, sep="\t", index=False, float_format="%.6g"
    )


if __name__ == "__main__":
    main()
