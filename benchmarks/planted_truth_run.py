"""The whole workflow, deployed as a Snakemake module, finds what a 20-patient cohort plants.

A cohort from ``ifnsig.simulate`` (20 patients at three timepoints, 8 controls, 3,000 genes,
300 of them changed by treatment; seed 7) is written into a folder where the workflow is
deployed as a Snakemake module (the layout ``snakedeploy deploy-workflow`` writes, the
module's source being this repository), and the real ``snakemake`` runs it on 2 cores. Each
check below compares the results with the planted truth (``inputs/truth_*.tsv``); the run
then has nothing left to do. Every check is printed with its outcome, and the run's wall
time and outcomes are appended to ``benchmarks/out/planted_truth_run.tsv``; the exit status
is 1 when a check fails.

The test suite checks the same deployment on its small shared cohort (every output, byte for
byte, in ``tests/test_reproducible.py``); these checks need the larger cohort's power.

```bash
python benchmarks/planted_truth_run.py            # 198 s of CPU, all checks passed
python benchmarks/planted_truth_run.py --keep run  # the run's folder kept in ./run
```
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import EVERY_STAGE, deploy_module, snakemake, write_project  # noqa: E402

from ifnsig import demo  # noqa: E402
from ifnsig.demo import run_table  # noqa: E402
from ifnsig.simulate import CohortSpec  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "planted_truth_run.tsv"
PRIMARY = {"signature": "RICE2013_6", "method": "median_fold_change"}
SPEC = CohortSpec(n_patients=20, n_controls=8, n_genes=3000, n_treatment_genes=300, seed=7)


def every_output_exists_and_rerun_has_nothing_to_do(run):
    for path in EVERY_STAGE:
        assert (run / path).stat().st_size > 0, path
    dry = snakemake(run, "-n")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr


def baseline_positivity_agrees_with_planted_truth(run):
    merged = demo.baseline_positivity(run)
    assert (merged["positive"] == merged["ifn_high"]).mean() >= 0.9


def score_falls_at_followup(run):
    primary = run_table(run, "results/clinical/paired_tests.tsv", **PRIMARY)
    assert (primary["pvalue"] < 0.05).all() and (primary["estimate"] < 0).all()


def planted_de_genes_found_at_low_observed_fdr(run):
    calls_per_planted, observed_fdr = demo.planted_de_calls(run, "month6_vs_baseline")
    assert calls_per_planted > 0.5 and observed_fdr <= 0.10


def score_change_tracks_cmas_change_with_planted_sign(run):
    month6 = {**PRIMARY, "timepoint": "month6"}
    row = run_table(run, "results/clinical/correlations.tsv", **month6, measure="CMAS").iloc[0]
    assert row["estimate"] < 0 and row["pvalue"] < 0.05
    # The same association recomputed from the written change tables.
    changes = run_table(run, "results/clinical/score_changes.tsv", **month6)
    clin = run_table(run, "results/clinical/changes.tsv", measure="CMAS", timepoint="month6")
    merged = changes.merge(clin, on="subject")
    rho = stats.spearmanr(merged["change_x"], merged["change_y"])[0]
    assert np.isclose(rho, row["estimate"])


def shipped_ifn_sets_are_enriched_in_planted_direction(run):
    prerank = run_table(run, "results/enrichment/month6_vs_baseline.prerank.tsv")
    rows = prerank.set_index("gene_set").loc[["RICE2013_6", "NIH28"]]
    assert (rows["nes"] < 0).all() and (rows["fdr"] < 0.05).all()


def set_tests_find_the_planted_ifn_fall_with_every_subject(run):
    tests = run_table(run, "results/enrichment/month6_vs_baseline.set_tests.tsv")
    rows = tests.set_index("gene_set").loc[["RICE2013_6", "NIH28"]]
    assert (rows["direction"] == "down").all() and (rows["estimate"] < 0).all()
    assert (rows["fdr"] < 0.05).all() and (rows["method"] == "sign_flip").all()
    assert (rows["n"] == SPEC.n_patients).all()


def qc_flags_nothing_in_a_clean_cohort_and_reports_every_sample(run):
    flags = run_table(run, "results/qc/qc_flags.tsv")
    assert flags.empty, flags[["sample", "flag", "evidence"]].to_string()
    metrics = run_table(run, "results/qc/qc_metrics.tsv")
    samples = run_table(run, "inputs/samples.tsv")
    assert sorted(metrics["sample"]) == sorted(samples["sample"])
    truth = run_table(run, "inputs/truth_subjects.tsv").set_index("subject")["sex"]
    assert (metrics["predicted_sex"] == metrics["subject"].map(truth)).all()
    composition = run_table(run, "results/qc/composition.tsv")
    assert {"neutrophil_score", "t_cell_score"} <= set(composition.columns)


CHECKS = [
    every_output_exists_and_rerun_has_nothing_to_do,
    baseline_positivity_agrees_with_planted_truth,
    score_falls_at_followup,
    planted_de_genes_found_at_low_observed_fdr,
    score_change_tracks_cmas_change_with_planted_sign,
    shipped_ifn_sets_are_enriched_in_planted_direction,
    set_tests_find_the_planted_ifn_fall_with_every_subject,
    qc_flags_nothing_in_a_clean_cohort_and_reports_every_sample,
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="planted_truth_"))
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        deploy_module(folder)
        write_project(folder, SPEC)
        started = time.monotonic()
        command = [sys.executable, "-m", "snakemake", "-s", str(folder / "Snakefile")]
        run = subprocess.run(
            [*command, "--directory", str(folder), "--cores", "2"], capture_output=True, text=True
        )
        wall = time.monotonic() - started
        assert run.returncode == 0, run.stderr[-4000:]
        print(f"snakemake run: {wall:.0f} s")
        outcomes = {}
        for check in CHECKS:
            try:
                check(folder)
                outcomes[check.__name__] = "passed"
            except AssertionError:
                outcomes[check.__name__] = "FAILED"
                traceback.print_exc()
            print(f"{outcomes[check.__name__]:>7}  {check.__name__}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    OUT.parent.mkdir(exist_ok=True)
    date = datetime.now(UTC).isoformat(timespec="seconds")
    row = pd.DataFrame([{"date": date, "wall_s": round(wall), **outcomes}])
    row.to_csv(OUT, sep="\t", index=False, mode="a", header=not OUT.exists())
    return int("FAILED" in outcomes.values())


if __name__ == "__main__":
    sys.exit(main())
