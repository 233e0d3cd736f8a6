"""The whole-workflow size benchmark's bookkeeping (benchmarks/run_benchmarks.py) on made-up
rows: rules and stages of the benchmark files, growth exponents, the critical path, and the
cohort written as ``.h5ad``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from conftest import load_benchmark


def rows(n: int, scale: float) -> list[dict]:
    """Benchmark rows of a run of ``n`` samples: two gene shards, two contrasts."""
    jobs = {
        "normalize": (10 * scale, 100 * scale),
        "de_genewise_dispersions.0": (20 * scale, 300 * scale**0.5),
        "de_genewise_dispersions.1": (20 * scale, 310 * scale**0.5),
        "differential_expression": (5 * scale, 200),
        "enrichment_month3_vs_baseline": (3.0, 50),
        "enrichment_month6_vs_baseline": (3.0, 60),
        "total": (80 * scale, 310 * scale**0.5),
    }
    return [
        {
            "benchmark": "workflow",
            "n_samples": n,
            "n_genes": 100,
            "step": step,
            "wall_s": cpu,
            "cpu_s": cpu,
            "max_rss_mb": rss,
            "cores": 2,
            "note": "",
        }
        for step, (cpu, rss) in jobs.items()
    ]


def test_stages_sum_shard_and_contrast_jobs_and_give_growth_exponents(tmp_path, monkeypatch):
    bench = load_benchmark("run_benchmarks")
    monkeypatch.setattr(bench, "SCALING", tmp_path / "scaling.tsv")
    assert bench.rule_of("de_shard_tests.12") == "de_shard_tests"
    assert bench.rule_of("plot_de_month6_vs_baseline") == "plot_de"
    table = pd.DataFrame(rows(1000, 1.0) + rows(4000, 4.0) + rows(50, 0.1))
    per_stage = bench.stages(table, min_samples=1000).set_index(["rule", "n_samples"])
    assert per_stage.loc[("de_genewise_dispersions", 1000), "cpu_s"] == 40
    assert per_stage.loc[("de_genewise_dispersions", 1000), "max_rss_mb"] == 310
    assert per_stage.loc[("enrichment", 4000), "jobs"] == 2
    whole_de = per_stage.loc[("differential_expression (all jobs)", 4000)]
    assert whole_de["cpu_s"] == 4 * 45 and whole_de["jobs"] == 3
    assert per_stage.loc[("differential_expression (all jobs)", 1000), "cpu_s"] == 45
    growth = bench.scaling(table, min_samples=1000).set_index("step")
    assert growth.loc["normalize", "sizes"] == "1000,4000"
    np.testing.assert_allclose(growth.loc["normalize", "cpu_exponent"], 1.0)
    np.testing.assert_allclose(growth.loc["normalize", "memory_exponent"], 1.0)
    np.testing.assert_allclose(growth.loc["de_genewise_dispersions", "memory_exponent"], 0.5)
    np.testing.assert_allclose(growth.loc["enrichment", "cpu_exponent"], 0.0, atol=1e-12)
    text = bench.stage_markdown(table, 1000, 100)
    assert "| normalize | 10 s, 0.10 GB | 40 s, 0.39 GB | 1.00 | 1.00 |" in text
    assert text.splitlines()[-1].startswith("| total |")


def test_critical_path_is_the_longest_chain_of_rules():
    bench = load_benchmark("run_benchmarks")
    dot = """digraph snakemake_dag {
        0[label = "all", color = "0.1 0.6 0.85", style="rounded"];
        1[label = "normalize", color = "0.2 0.6 0.85", style="rounded"];
        2[label = "quality_control", color = "0.3 0.6 0.85", style="rounded"];
        3[label = "differential_expression", color = "0.4 0.6 0.85", style="rounded"];
        4[label = "enrichment", color = "0.5 0.6 0.85", style="rounded"];
        1 -> 2
        1 -> 3
        3 -> 4
        2 -> 0
        4 -> 0
    }"""
    times = {"normalize": 10, "quality_control": 50, "differential_expression": 30}
    assert bench.critical_path(dot, times | {"enrichment": 5}) == 60
    assert bench.critical_path(dot, times | {"enrichment": 15}) == 60
    assert bench.critical_path(dot, times | {"enrichment": 25}) == 65


def test_cohort_written_as_h5ad_holds_the_simulated_counts(tmp_path):
    from ifnsig.simulate import simulate_cohort

    bench = load_benchmark("run_benchmarks")
    cohort = simulate_cohort(bench.cohort_spec(20, 400, seed=1))
    counts = cohort.counts.copy()
    path = bench.write_cohort(cohort, tmp_path / "inputs", "h5ad")
    assert path == "inputs/counts.h5ad"
    assert sorted(p.name for p in (tmp_path / "inputs").iterdir()) == [
        "clinical.tsv",
        "counts.h5ad",
        "samples.tsv",
        "truth_genes.tsv",
        "truth_samples.tsv",
        "truth_subjects.tsv",
    ]
    written = ad.read_h5ad(tmp_path / "inputs" / "counts.h5ad")
    assert list(written.obs_names) == list(counts.columns)
    assert list(written.var_names) == list(counts.index)
    np.testing.assert_array_equal(written.X, counts.to_numpy().T)
    samples = pd.read_csv(tmp_path / "inputs" / "samples.tsv", sep="\t")
    assert len(samples) == 20
