import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from conftest import REPO, load_benchmark
from scipy import stats

from ifnsig.mixed_models import (
    COEFFICIENT_COLUMNS,
    design_matrix,
    fit_random_intercept,
    fit_random_intercept_covariances,
)

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("mixed_models")

DATA = REPO / "tests" / "data"
TIMEPOINTS = ["baseline", "month3", "month6"]
# The models of tests/data/mixed_models_lmertest.R: response, fixed terms, centred terms.
REFERENCE_MODELS = {
    "raw_CMAS": ("CMAS", ["score", "timepoint"], []),
    "centred_CMAS": ("CMAS", ["score", "timepoint"], ["score"]),
    "centred_prednisone_drug": (
        "prednisone_mg_kg_day",
        ["score", "timepoint", "drug"],
        ["score"],
    ),
    "centred_CAT_prednisone": (
        "CAT_BM_activity",
        ["score", "timepoint", "prednisone_mg_kg_day"],
        ["score", "prednisone_mg_kg_day"],
    ),
    "centred_noise": ("noise", ["score", "timepoint"], ["score"]),
}


def r_term(term):
    """R's coefficient name for one of ours: ``timepoint[month3]`` is ``timepointmonth3``."""
    return term.replace("[", "").replace("]", "")


@pytest.fixture(scope="module")
def reference_data():
    frame = pd.read_csv(DATA / "mixed_models_data.tsv", sep="\t")
    return frame.assign(timepoint=pd.Categorical(frame["timepoint"], TIMEPOINTS))


@pytest.fixture(scope="module")
def reference():
    return pd.read_csv(DATA / "mixed_models_lmertest.tsv", sep="\t")


def panel(n_subjects=12, seed=0, within_slope=1.0, between_slope=0.0, tau=2.0, sigma=1.0):
    """Subjects at three visits: y = within_slope * (x - mean) + between_slope * mean + ..."""
    rng = np.random.default_rng(seed)
    subject = np.repeat([f"S{i:02d}" for i in range(n_subjects)], 3)
    timepoint = np.tile(TIMEPOINTS, n_subjects)
    level = np.repeat(rng.normal(0, 2, n_subjects), 3)
    x = level + rng.normal(0, 1, 3 * n_subjects)
    mean = pd.Series(x).groupby(subject).transform("mean").to_numpy()
    y = (
        within_slope * (x - mean)
        + between_slope * mean
        + np.repeat(rng.normal(0, tau, n_subjects), 3)
        + rng.normal(0, sigma, 3 * n_subjects)
    )
    return pd.DataFrame(
        {
            "subject": subject,
            "timepoint": pd.Categorical(timepoint, TIMEPOINTS),
            "x": x,
            "y": y,
        }
    )


@pytest.mark.parametrize("vcov", ["model", "CR2"])
@pytest.mark.parametrize("model", list(REFERENCE_MODELS))
def test_matches_lmertest_and_clubsandwich(reference_data, reference, model, vcov):
    response, terms, centre = REFERENCE_MODELS[model]
    fit = fit_random_intercept(reference_data, response, terms, "subject", centre, vcov=vcov)
    ref = reference[reference["model"] == model].set_index("term")
    ours = fit.coefficients.rename(index=r_term).loc[ref.index]
    prefix = "" if vcov == "model" else "cr2_"
    np.testing.assert_allclose(ours["estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(ours["se"], ref[f"{prefix}se"], rtol=1e-6)
    np.testing.assert_allclose(ours["df"], ref[f"{prefix}df"], rtol=1e-4)
    np.testing.assert_allclose(ours["pvalue"], ref[f"{prefix}pvalue"], rtol=1e-4)
    np.testing.assert_allclose(ours["statistic"], ours["estimate"] / ours["se"])
    first = ref.iloc[0]
    np.testing.assert_allclose(fit.residual_variance, first["residual_variance"], rtol=1e-6)
    np.testing.assert_allclose(fit.group_variance, first["group_variance"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fit.reml_criterion, first["reml_criterion"], rtol=1e-9)
    assert fit.singular == bool(first["singular"])
    assert fit.converged
    assert (fit.n_obs, fit.n_groups) == (69, 25)
    assert list(fit.coefficients.columns) == COEFFICIENT_COLUMNS


@pytest.mark.parametrize("model", list(REFERENCE_MODELS))
def test_both_covariances_from_one_fit_equal_two_fits(reference_data, model):
    response, terms, centre = REFERENCE_MODELS[model]
    both = fit_random_intercept_covariances(reference_data, response, terms, "subject", centre)
    assert list(both) == ["CR2", "model"]
    for vcov, fit in both.items():
        alone = fit_random_intercept(reference_data, response, terms, "subject", centre, vcov=vcov)
        assert fit.converged and fit.coefficients.equals(alone.coefficients)
        others = [k for k in fit.__dict__ if k != "coefficients"]
        assert [getattr(fit, k) for k in others] == [getattr(alone, k) for k in others]
    # A model that cannot be fitted says why in each.
    few = fit_random_intercept_covariances(reference_data.head(2), response, terms, "subject")
    assert all(not f.converged and "cannot fit" in f.note for f in few.values())
    assert [f.vcov for f in few.values()] == ["CR2", "model"]


@pytest.mark.parametrize("model", ["centred_CMAS", "centred_CAT_prednisone"])
def test_cr2_by_cluster_equals_the_dense_matrices_and_clubsandwich(
    reference_data, reference, model, monkeypatch
):
    import ifnsig.mixed_models as mm

    response, terms, centre = REFERENCE_MODELS[model]
    dense = fit_random_intercept(reference_data, response, terms, "subject", centre, vcov="CR2")
    monkeypatch.setattr(mm, "CR2_DENSE_MAX", 10)  # 69 observations: computed by cluster
    blocks = fit_random_intercept(reference_data, response, terms, "subject", centre, vcov="CR2")
    pd.testing.assert_frame_equal(blocks.coefficients, dense.coefficients, rtol=1e-10)
    ref = reference[reference["model"] == model].set_index("term")
    ours = blocks.coefficients.rename(index=r_term).loc[ref.index]
    np.testing.assert_allclose(ours["df"], ref["cr2_df"], rtol=1e-4)
    # Unbalanced clusters (a subject seen once) too.
    data = panel(n_subjects=9, seed=3).iloc[2:]
    monkeypatch.setattr(mm, "CR2_DENSE_MAX", 1000)
    dense = fit_random_intercept(data, "y", ["x", "timepoint"], "subject", ["x"], vcov="CR2")
    monkeypatch.setattr(mm, "CR2_DENSE_MAX", 0)
    blocks = fit_random_intercept(data, "y", ["x", "timepoint"], "subject", ["x"], vcov="CR2")
    pd.testing.assert_frame_equal(blocks.coefficients, dense.coefficients, rtol=1e-10)


def test_singular_fit_is_ordinary_least_squares(reference_data):
    fit = fit_random_intercept(
        reference_data, "noise", ["score", "timepoint"], "subject", vcov="model"
    )
    assert fit.singular and fit.group_variance == 0.0
    assert "random-intercept variance at 0" in fit.note
    ols = smf.ols("noise ~ score + C(timepoint)", reference_data).fit()
    np.testing.assert_allclose(fit.coefficients.loc["score", "estimate"], ols.params["score"])
    np.testing.assert_allclose(fit.coefficients.loc["score", "se"], ols.bse["score"])
    np.testing.assert_allclose(fit.coefficients.loc["score", "pvalue"], ols.pvalues["score"])
    assert (fit.coefficients["df"] == ols.df_resid).all()


def test_within_coefficient_is_the_fixed_effects_estimate():
    frame = panel(within_slope=0.5, between_slope=3.0)
    fit = fit_random_intercept(frame, "y", ["x", "timepoint"], "subject", centre=["x"])
    dummies = smf.ols("y ~ x + C(timepoint) + C(subject)", frame).fit()
    np.testing.assert_allclose(fit.coefficients.loc["x_within", "estimate"], dummies.params["x"])


def test_between_confounding_does_not_pose_as_a_within_link():
    frame = panel(n_subjects=40, within_slope=0.0, between_slope=1.0, tau=0.5, seed=2)
    raw = fit_random_intercept(frame, "y", ["x", "timepoint"], "subject")
    split = fit_random_intercept(frame, "y", ["x", "timepoint"], "subject", centre=["x"])
    assert raw.coefficients.loc["x", "pvalue"] < 1e-10
    assert split.coefficients.loc["x_within", "pvalue"] > 0.05
    assert split.coefficients.loc["x_between", "estimate"] == pytest.approx(1.0, abs=0.2)
    assert split.coefficients.loc["x_between", "pvalue"] < 1e-10


def test_interval_is_the_t_interval_at_the_satterthwaite_df():
    from scipy import stats

    frame = panel(seed=3)
    fit = fit_random_intercept(frame, "y", ["x"], "subject", centre=["x"], confidence=0.9)
    row = fit.coefficients.loc["x_within"]
    half = stats.t.ppf(0.95, row["df"]) * row["se"]
    assert row["ci_low"] == pytest.approx(row["estimate"] - half)
    assert row["ci_high"] == pytest.approx(row["estimate"] + half)
    assert row["pvalue"] == pytest.approx(2 * stats.t.sf(abs(row["statistic"]), row["df"]))


def test_design_centres_splits_and_drops():
    frame = panel(n_subjects=4).assign(
        sex=np.repeat(["female", "male", "female", "male"], 3), constant=1.0
    )
    frame.loc[frame.index[:3], "timepoint"] = "baseline"
    design, notes = design_matrix(
        frame, ["x", "timepoint", "sex", "constant"], "subject", centre=["x", "sex"]
    )
    assert list(design.columns) == [
        "(Intercept)",
        "x_within",
        "x_between",
        "timepoint[month3]",
        "timepoint[month6]",
        "sex[male]_between",
    ]
    sums = design["x_within"].groupby(frame["subject"]).sum()
    np.testing.assert_allclose(sums, 0.0, atol=1e-12)
    np.testing.assert_allclose(design["x_within"] + design["x_between"], frame["x"])
    assert "sex[male] does not vary within any subject: between term only" in notes
    assert "constant left out: aliased with the intercept or earlier columns" in notes
    with pytest.raises(ValueError, match="centred terms"):
        design_matrix(frame, ["x"], "subject", centre=["sex"])


def test_missing_and_infinite_values_drop_rows_and_unbalanced_subjects_fit():
    frame = panel(seed=4)
    frame.loc[[1, 5], "y"] = np.nan
    frame.loc[7, "x"] = np.inf
    fit = fit_random_intercept(frame, "y", ["x", "timepoint"], "subject", centre=["x"])
    assert fit.converged and fit.n_obs == len(frame) - 3 and fit.n_groups == 12
    assert fit.note == "1 rows with an infinite value left out"
    assert fit.coefficients.notna().all().all()


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (slice(0, 3), "1 subjects"),  # one subject
        (slice(None, None, 3), "12 subjects"),  # one row per subject
    ],
)
def test_data_too_thin_reports_instead_of_failing(rows, expected):
    fit = fit_random_intercept(panel().iloc[rows], "y", ["x"], "subject", centre=["x"])
    assert not fit.converged
    assert expected in fit.note
    assert fit.coefficients.isna().all().all()


def test_no_optimum_reports_instead_of_failing():
    frame = panel()
    # The response is an exact function of the subject and x: no residual variance is left.
    frame["y"] = frame["subject"].str[1:].astype(float) * 5 + 2 * frame["x"]
    fit = fit_random_intercept(frame, "y", ["x", "timepoint"], "subject")
    assert not fit.converged
    assert "no REML optimum" in fit.note
    assert fit.coefficients["estimate"].isna().all()


def test_unknown_column_is_named():
    with pytest.raises(KeyError, match="score"):
        fit_random_intercept(panel(), "y", ["score"], "subject")


def within_pvalue(frame, vcov):
    fit = fit_random_intercept(
        frame, "measure", ["score", "timepoint"], "subject", centre=["score"], vcov=vcov
    )
    return fit.coefficients.loc["score_within", "pvalue"]


def test_within_tests_are_calibrated_on_demo_shaped_cohorts():
    """A small run of benchmarks/bench_mixed_calibration.py (a few seconds)."""
    bench = load_benchmark("bench_mixed_calibration")
    rng = np.random.default_rng(11)
    n = 40
    permuted = [bench.permute_measures(bench.simulate_cohort(rng), rng) for _ in range(n)]
    exchangeable = [bench.simulate_cohort(rng, link=0.0, spread=0.0) for _ in range(n)]
    linked = [bench.simulate_cohort(rng, link=0.5) for _ in range(n)]
    hits = {
        "permuted, CR2": sum(within_pvalue(f, "CR2") < 0.05 for f in permuted),
        "exchangeable, CR2": sum(within_pvalue(f, "CR2") < 0.05 for f in exchangeable),
        "exchangeable, model": sum(within_pvalue(f, "model") < 0.05 for f in exchangeable),
        "linked, CR2": sum(within_pvalue(f, "CR2") < 0.05 for f in linked),
    }
    # 40 null data sets: up to 6 rejections for a 5% test (P(X > 6) < 0.01).
    assert hits["permuted, CR2"] <= 6, hits
    assert hits["exchangeable, CR2"] <= 6, hits
    assert hits["exchangeable, model"] <= 6, hits
    assert hits["linked, CR2"] >= 0.25 * n, hits


def test_no_complete_row_reports_instead_of_failing():
    frame = panel().assign(y=np.nan)
    fit = fit_random_intercept(frame, "y", ["x"], "subject")
    assert not fit.converged and fit.n_obs == 0
    assert "no row" in fit.note


# --- the clinical stage's table, through linkage.mixed_models -----------------------------------

# Reference model -> (measure, linkage.covariates): the models linkage.mixed_models fits for them.
LINKAGE_MODELS = {
    "centred_CMAS": ("CMAS", []),
    "centred_CAT_prednisone": ("CAT_BM_activity", ["prednisone_mg_kg_day"]),
    # The dose is the measure here, so it is left out of its own covariates.
    "centred_prednisone_drug": ("prednisone_mg_kg_day", ["prednisone_mg_kg_day", "drug"]),
    "centred_noise": ("noise", []),
}


@pytest.mark.parametrize("model", list(LINKAGE_MODELS))
def test_linkage_table_is_lmertest_and_clubsandwich(reference_data, reference, model):
    from ifnsig import linkage

    measure, covariates = LINKAGE_MODELS[model]
    frame = reference_data.assign(
        timepoint=reference_data["timepoint"].astype(str), group="patient", signature="S",
        method="m",
    )  # fmt: skip
    table = linkage.mixed_models(
        frame[["subject", "timepoint", "group", "signature", "method", "score"]],
        frame[["subject", "timepoint", measure]],
        {measure: {"higher_is_better": True}},
        TIMEPOINTS,
        "patient",
        frame[["subject", "timepoint", "drug", "prednisone_mg_kg_day"]],
        covariates,
    )
    assert list(table.columns) == linkage.MIXED_COLUMNS and len(table) == 1
    row = table.iloc[0]
    ref = reference[reference["model"] == model].set_index("term")
    within, between = ref.loc["score_within"], ref.loc["score_between"]
    # Primary columns: the within coefficient, CR2 (clubSandwich::coef_test).
    assert row["estimate"] == pytest.approx(within["estimate"], rel=1e-6)
    assert row["df"] == pytest.approx(within["cr2_df"], rel=1e-4)
    assert row["pvalue"] == pytest.approx(within["cr2_pvalue"], rel=1e-4)
    assert row["statistic"] == pytest.approx(within["estimate"] / within["cr2_se"], rel=1e-6)
    half = stats.t.ppf(0.975, within["cr2_df"]) * within["cr2_se"]
    assert row["ci_low"] == pytest.approx(within["estimate"] - half, rel=1e-4)
    assert row["ci_high"] == pytest.approx(within["estimate"] + half, rel=1e-4)
    assert row["fdr"] == pytest.approx(row["pvalue"])
    # The between coefficient (CR2) and the model-based within test (lmerTest).
    assert row["estimate_between"] == pytest.approx(between["estimate"], rel=1e-6)
    assert row["df_between"] == pytest.approx(between["cr2_df"], rel=1e-4)
    assert row["pvalue_between"] == pytest.approx(between["cr2_pvalue"], rel=1e-4)
    assert row["df_model"] == pytest.approx(within["df"], rel=1e-4)
    assert row["pvalue_model"] == pytest.approx(within["pvalue"], rel=1e-4)
    assert row["random_intercept_variance"] == pytest.approx(
        within["group_variance"], rel=1e-6, abs=1e-12
    )
    assert row["residual_variance"] == pytest.approx(within["residual_variance"], rel=1e-6)
    assert bool(row["singular"]) == bool(within["singular"])
    assert bool(row["converged"]) and (row["n"], row["n_obs"]) == (25, 69)
    assert row["covariates"] == ";".join(c for c in covariates if c != measure)
    assert row["direction"] == f"{measure} higher when the score is higher"
    assert "CR2" in row["test"]
