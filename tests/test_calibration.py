"""A small null calibration: the workflow's linkage and set tests on three null cohorts.

Three demo-shaped cohorts from the simulator with nothing planted over time
(``CohortSpec(null=True)``: 25 patients at three timepoints, 12 controls, 400 genes), scored
by the median fold change straight from the package (no VST fit), then tested by the
functions the ``clinical_linkage`` and ``enrichment`` stages call, with the repository's
clinical measures and covariates. A few seconds in all. The bounds are wide (three cohorts say
little about a 5% rate); they catch a grossly miscalibrated test, such as a mixed model whose
within-patient SE ignores differing trajectories or a gene-set test permuting genes. The full
benchmark (``benchmarks/bench_calibration.py``: every stage, DE included, on many cohorts) and
its figures are in the README's Calibration section.
"""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, load_benchmark
from pydeseq2.preprocessing import deseq2_norm
from test_clinical import cohort_scores

from ifnsig import genesets, linkage, set_tests
from ifnsig.simulate import CohortSpec, simulate_cohort

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("calibration")

TIMEPOINTS = ["baseline", "month3", "month6"]
SEEDS = (1, 2, 3)
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def null_cohort(seed: int):
    return simulate_cohort(CohortSpec(null=True, n_genes=400, n_treatment_genes=10, seed=seed))


@pytest.fixture(scope="module")
def cohorts():
    return [null_cohort(seed) for seed in SEEDS]


def test_null_cohorts_plant_nothing_over_time(cohorts):
    for cohort in cohorts:
        truth = cohort.truth_genes
        assert not truth["planted_de"].any()
        assert (truth["lfc_month6_vs_baseline"] == 0).all()


def test_mixed_models_and_paired_tests_reject_near_the_nominal_rate(cohorts):
    measures = CONFIG["clinical_measures"]
    names = CONFIG["linkage"]["covariates"]
    primary, model, paired = [], [], []
    for cohort in cohorts:
        table = cohort_scores(cohort, signatures=("RICE2013_6", "NIH28"))
        covariates = linkage.covariate_values(cohort.samples, cohort.clinical, names)
        mixed = linkage.mixed_models(
            table, cohort.clinical, measures, TIMEPOINTS, "patient", covariates, names
        )
        assert mixed["converged"].all()
        assert (mixed["direction"] == mixed["measure"] + " higher when the score is higher").all()
        primary += list(mixed["pvalue"])
        model += list(mixed["pvalue_model"])
        changes = linkage.score_changes(table, TIMEPOINTS, "patient")
        paired += list(linkage.paired_tests(changes, TIMEPOINTS)["pvalue"])
    primary, model, paired = (np.array(p, float) for p in (primary, model, paired))
    # cohorts x 2 signatures x measures; rows of one cohort share its patients.
    assert len(primary) == len(cohorts) * 2 * len(measures) and np.isfinite(primary).all()
    assert (primary < 0.05).mean() <= 0.15, np.sort(primary)[:6]
    assert (model < 0.05).mean() <= 0.2, np.sort(model)[:6]
    assert (paired < 0.05).sum() <= 2, paired


def test_set_tests_call_no_set_where_nothing_changed(cohorts):
    sets = genesets.load_gene_sets([genesets.SHIPPED_GMT])
    aliases = genesets.read_aliases(genesets.SHIPPED_ALIASES)
    called, smallest = 0, []
    for cohort in cohorts:
        counts = cohort.counts.T
        normalized, _ = deseq2_norm(counts.to_numpy())
        values = pd.DataFrame(np.log2(normalized + 1.0), index=counts.index, columns=counts.columns)
        matched, _ = genesets.match_gene_sets(sets, pd.Series(counts.columns), aliases)
        scores, sizes = set_tests.set_scores(values, counts.columns, matched)
        assert len(sizes) >= 5
        samples = cohort.samples[cohort.samples["group"] == "patient"]
        for test in ("month3", "month6"):
            chosen = samples[samples["timepoint"].isin(["baseline", test])]
            frame = pd.DataFrame(
                {
                    "sample": chosen["sample"].to_numpy(),
                    "subject": chosen["subject"].to_numpy(),
                    "level": chosen["timepoint"].to_numpy(),
                }
            )
            comparison = set_tests.Comparison("sign_flip", frame, test, "baseline")
            result = set_tests.set_tests(scores, sizes, comparison, permutations=999, seed=1)
            assert (result["n"] == 25).all()
            called += bool((result["fdr"] < 0.05).any())
            smallest.append(result["pvalue"].min())
    # 6 null contrasts: gene-label permutation of these correlated IFN sets calls most of them.
    assert called <= 1, smallest


def test_benchmark_visit_factor_reaches_every_cohort_and_its_own_summary():
    bench = load_benchmark("bench_calibration")
    args = bench.arguments(["--ifn-visit-sd", "0.15"])
    assert args.summary == bench.VISITS_SUMMARY
    assert bench.arguments([]).summary == bench.SUMMARY
    for kind in ("null", "planted"):
        spec = bench.cohort_spec(kind, 1, 600, ifn_visit_sd=args.ifn_visit_sd)
        assert spec.ifn_visit_sd == 0.15 and spec.null == (kind == "null")


def test_quick_benchmark_takes_the_same_visit_option(monkeypatch, tmp_path):
    quick = load_benchmark("bench_quick_calibration")
    bench = quick.load_calibration()
    args = quick.arguments(["--ifn-visit-sd", "0.15", "--genes", "300"], bench)
    assert args.ifn_visit_sd == 0.15
    assert args.summary == quick.HERE / "quick_calibration_ifn_visits.tsv"
    assert quick.arguments([], bench).summary == quick.SUMMARY
    # The option reaches the simulated cohort (stopped there: no stage is run).
    seen = []

    def stop(spec):
        seen.append(spec)
        raise RuntimeError("simulated")

    monkeypatch.setattr("ifnsig.simulate.simulate_cohort", stop)
    with pytest.raises(RuntimeError, match="simulated"):
        quick.run_cohort("null", 4, args, tmp_path, bench)
    assert seen[0].ifn_visit_sd == 0.15 and seen[0].null and seen[0].n_genes == 300


def test_benchmark_summary_pools_rows_and_counts_contrasts():
    bench = load_benchmark("bench_calibration")
    records = pd.DataFrame(
        [
            {"kind": "null", "seed": s, "metric": m, "hits": h, "trials": t, "value": np.nan}
            for s, m, h, t in [
                (1, "mixed: within, CR2 (primary)", 2, 36),
                (2, "mixed: within, CR2 (primary)", 1, 36),
                (3, "mixed: within, CR2 (primary)", 0, 36),
                (1, "set tests: contrasts with any set at FDR < 0.05", 0, 1),
                (1, "set tests: contrasts with any set at FDR < 0.05", 1, 1),
                (2, "set tests: contrasts with any set at FDR < 0.05", 0, 1),
            ]
        ]
    )
    summary = bench.summarize(records).set_index("metric")
    mixed = summary.loc["mixed: within, CR2 (primary)"]
    assert (mixed["hits"], mixed["trials"], mixed["cohorts"]) == (3, 108, 3)
    assert mixed["ci_low"] <= 3 / 108 <= mixed["ci_high"]
    sets = summary.loc["set tests: contrasts with any set at FDR < 0.05"]
    assert (sets["hits"], sets["trials"]) == (1, 3)
    assert "| mixed: within, CR2 (primary) | 2.8 % (" in bench.markdown(summary.reset_index())


def test_trace_effective_dispersion_is_the_counts_second_moment():
    # de_null_trace.py's reference dispersion for a gene carrying the visit factor: the
    # variance of its counts, m + alpha m^2, matched by negative binomial draws whose mean is
    # multiplied by 2 ** (loading x N(0, SD)) (normalized to keep the mean m).
    trace = load_benchmark("de_null_trace")
    rng = np.random.default_rng(0)
    mean, dispersion, loading, sd = 400.0, 0.05, 3.0, 0.15
    effective = trace.effective_dispersion(dispersion, loading, sd)
    assert trace.effective_dispersion(dispersion, 0.0, sd) == pytest.approx(dispersion)
    factor = 2.0 ** (loading * rng.normal(0, sd, 400_000))
    mu = mean * factor / factor.mean()
    counts = rng.negative_binomial(1 / dispersion, 1 / (1 + dispersion * mu))
    moment = (counts.var() - counts.mean()) / counts.mean() ** 2
    assert moment == pytest.approx(effective, rel=0.03)
    assert effective > 2.5 * dispersion
    # The negative binomial's maximum-likelihood dispersion of the same counts falls short
    # of their second moment (the README's trace: a log-normal factor on the mean is not a
    # gamma one), by about 0.13 log2 at this loading.
    from scipy import optimize, special

    def negative_loglik(log_alpha: float) -> float:
        size, m = np.exp(-log_alpha), counts.mean()
        return -np.sum(
            special.gammaln(counts + size)
            - special.gammaln(size)
            + size * np.log(size / (size + m))
            + counts * np.log(m / (size + m))
        )

    fitted = np.exp(optimize.minimize_scalar(negative_loglik, bounds=(-6, 1), method="bounded").x)
    assert -0.2 < np.log2(fitted / effective) < -0.07
