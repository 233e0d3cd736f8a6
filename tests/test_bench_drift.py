"""The calibration-drift benchmark's counting (benchmarks/bench_drift.py) on made-up tables:
false calls of unplanted and of unchanged genes, BH's bound, the pooled counts and their
Clopper-Pearson intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import load_benchmark
from scipy.stats import binomtest


def test_metrics_count_unplanted_and_unchanged_calls_apart():
    bench = load_benchmark("bench_drift")
    genes = [f"g{i}" for i in range(6)]
    truth = pd.DataFrame(
        {
            "role": ["isg", "ifng", "background", "background", "background", "background"],
            "planted_de": [True, False, False, False, True, False],
            "lfc_month6_vs_baseline": [-1.2, -0.1, 0.0, 0.0, 0.8, 0.0],
            "dispersion": 0.1,
        },
        index=genes,
    )
    table = pd.DataFrame(
        {
            "pvalue": [1e-9, 1e-4, 5e-4, 0.5, 1e-6, np.nan],
            "stat": [-6.0, -3.9, 3.5, 0.7, 4.9, np.nan],
            "padj": [1e-8, 0.05, 0.08, 0.9, 1e-5, np.nan],
            "dispersion": 0.1,
            "cooks_outlier": False,
        },
        index=genes,
    )
    row = bench.metrics(table, truth)
    assert row["calls"] == 4
    assert row["false_calls"] == 2  # the IFN-gamma gene and g2
    assert row["unchanged_calls"] == 1  # g2 only: the IFN-gamma gene changes
    assert row["null_genes"] == 2 and row["null_p<0.001"] == 1
    assert np.isclose(row["bh_bound"], 0.1 * 2 / 5)  # g2, g3 unchanged of 5 adjusted


def test_pooled_sums_seeds_with_clopper_pearson_intervals():
    bench = load_benchmark("bench_drift")
    rows = [
        {"inference": "blocked", "variant": "standard", "calls": calls, "false_calls": false,
         "unchanged_calls": false, "null_genes": 1000, "null_p<0.001": k, "null_p<0.01": 10,
         "bh_bound": 0.09, "null_z_mean": 0.1, "power": 0.9}
        for calls, false, k in [(100, 10, 1), (300, 20, 3)]
    ]  # fmt: skip
    out = bench.pooled(rows).iloc[0]
    low, high = binomtest(30, 400).proportion_ci(method="exact")
    assert out["seeds"] == 2
    assert out["false"] == f"30/400 = 7.5% ({low:.1%}-{high:.1%})"
    assert out["null_p<0.001_x"].startswith("4/2000 = 2.00 (")
    assert bench.interval(0, 50)[0] == 0.0 and bench.interval(50, 50)[1] == 1.0
