"""A small run of benchmarks/bench_calibration.py: the workflow's tests on two null cohorts.

Two demo-shaped cohorts with nothing planted over time (25 patients, 600 genes, two
signatures scored by one method), through the workflow's own stages with their rules'
settings. The bounds are wide (two cohorts say little about a 5% rate); they catch a test
that is grossly miscalibrated, such as a gene-set test permuting genes. The figures of the
full benchmark (20 null and 10 planted cohorts) are in the README's Calibration section.
"""

import importlib.util

import pandas as pd
import pytest
from conftest import REPO


def load_benchmark():
    path = REPO / "benchmarks" / "bench_calibration.py"
    spec = importlib.util.spec_from_file_location("bench_calibration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smaller(config: dict) -> None:
    config["scores"]["signatures"] = ["RICE2013_6", "NIH28"]
    config["scores"]["methods"] = ["median_fold_change"]


@pytest.fixture(scope="module")
def null_rates(tmp_path_factory):
    bench = load_benchmark()
    args = bench.arguments(["--genes", "600", "--set-permutations", "999", "--threads", "1"])
    workdir = tmp_path_factory.mktemp("calibration")
    records = []
    for seed in (1, 2):
        records += bench.run_cohort("null", seed, args, workdir, overrides=smaller)
    summary = bench.summarize(pd.DataFrame(records))
    return summary.set_index("metric")


def rate(summary, metric):
    row = summary.loc[metric]
    return row["hits"], row["trials"]


def test_no_gene_set_is_called_where_nothing_changed(null_rates):
    hits, trials = rate(null_rates, "set tests: contrasts with any set at FDR < 0.05")
    assert trials == 4 and hits <= 1


def test_mixed_models_and_clinical_tests_reject_near_the_nominal_rate(null_rates):
    for metric, bound in [
        ("mixed: within, CR2 (primary)", 0.2),
        ("paired score test (Wilcoxon)", 0.25),
        ("change correlations (Spearman)", 0.15),
        ("baseline prediction: score_change, mann_whitney", 0.2),
    ]:
        hits, trials = rate(null_rates, metric)
        assert trials >= 4 and hits / trials <= bound, (metric, hits, trials)


def test_de_null_pvalues_near_nominal_and_t_more_conservative(null_rates):
    normal = rate(null_rates, "DE normal: null genes at p < 0.05")
    t = rate(null_rates, "DE t: null genes at p < 0.05")
    assert normal[1] > 2000
    assert 0.02 <= t[0] / t[1] <= normal[0] / normal[1] <= 0.09
