"""Positivity cut-offs: the mixture rule, and cut-offs that no sample could exceed."""

import copy
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run_stage

from ifnsig import data, positivity, reference, scores
from ifnsig.reference import FILES
from ifnsig.settings import aliases_file, score_gene_set_files
from ifnsig.validation import validate_config

PNG = ("over_time", "heatmap", "distributions", "type1_vs_type2")


def test_mixture_recovers_a_planted_bimodal_split():
    rng = np.random.default_rng(3)
    low, high = rng.normal(0.0, 1.0, 30), rng.normal(5.0, 1.2, 20)
    values = np.r_[low, high]
    truth = np.r_[np.zeros(30, bool), np.ones(20, bool)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = positivity.mixture_cutoff(values, seed=1)
    assert fit.bimodal and fit.ashman_d > 2 and fit.bic_two < fit.bic_one
    assert fit.mean_low < fit.cutoff < fit.mean_high
    assert ((values > fit.cutoff) == truth).mean() >= 0.9
    assert fit.weight_low == pytest.approx(0.6, abs=0.1)
    # Seeded: the same fit twice.
    assert positivity.mixture_cutoff(values, seed=1) == fit


def test_mixture_warns_on_unimodal_scores():
    values = np.random.default_rng(4).normal(0.0, 1.0, 60)
    with pytest.warns(positivity.MixtureWarning, match="do not look bimodal.*Ashman"):
        fit = positivity.mixture_cutoff(values, seed=1, label="SIG / method")
    assert not fit.bimodal


def test_mixture_crossing_is_the_midpoint_for_equal_components():
    assert positivity._crossing((0.5, 0.5), (0.0, 4.0), (1.0, 1.0)) == pytest.approx(2.0)
    # A heavier low component moves the crossing towards the high mean.
    assert positivity._crossing((0.8, 0.2), (0.0, 4.0), (1.0, 1.0)) > 2.0


def test_reachable_cutoff_is_mean_plus_k_sd():
    ref = np.array([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cutoff, fit = positivity.choose_cutoff(ref, (-np.inf, np.inf), positivity_sd=2)
    assert cutoff.rule == "reference_mean_sd" and fit is None
    assert cutoff.threshold == pytest.approx(2.0 + 2 * 1.0)


def test_unreachable_cutoff_falls_back_and_says_so():
    ref = np.array([0.40, 0.45, 0.49, 0.42, 0.47])
    with pytest.warns(positivity.PositivityWarning, match=r"S / singscore.*0\.5"):
        cutoff, _ = positivity.choose_cutoff(ref, (-0.5, 0.5), label="S / singscore")
    assert cutoff.rule == "reference_quantile"
    assert cutoff.threshold == pytest.approx(np.quantile(ref, 0.975))
    # No reachable fallback: nobody positive, and a warning.
    top = np.full(5, 0.5)
    with pytest.warns(positivity.PositivityWarning, match="no positivity cut-off can be exceeded"):
        cutoff, _ = positivity.choose_cutoff(top, (-0.5, 0.5), label="S / singscore")
    assert cutoff.rule == "unreachable"
    # The mixture fallback, when asked for, fits the baseline patients.
    patients = np.r_[np.full(10, 0.30), np.full(8, 0.49)] + np.linspace(0, 0.01, 18)
    with pytest.warns(positivity.PositivityWarning, match="mixture cut-off"):
        cutoff, fit = positivity.choose_cutoff(
            ref, (-0.5, 0.5), fallback="mixture", mixture_scores=patients
        )
    assert cutoff.rule == "mixture" and fit is not None and 0.31 < cutoff.threshold < 0.49


def planted_singscore_cohort() -> tuple[ad.AnnData, np.ndarray]:
    """Controls whose 5 signature genes rank high but not top; 8 patients have them on top.

    The controls' singscores (about 0.36 to 0.49) give mean + 2 SD above 0.5, the maximum.
    """
    rng = np.random.default_rng(7)
    n_genes, k = 200, 5
    signature = np.arange(k)
    groups = ["control"] * 12 + ["patient"] * 16
    planted_high = np.r_[np.zeros(12, bool), np.ones(8, bool), np.zeros(8, bool)]
    tops = np.r_[np.linspace(7, 60, 12).round(), np.full(8, k), rng.integers(15, 61, 8)]
    values = np.empty((len(groups), n_genes))
    for i, top in enumerate(tops.astype(int)):
        ranks = np.empty(n_genes)
        chosen = n_genes - 1 - rng.choice(top, k, replace=False)
        ranks[signature] = chosen
        ranks[k:] = rng.permutation(np.setdiff1d(np.arange(n_genes), chosen))
        values[i] = ranks + 1.0
    obs = pd.DataFrame(
        {
            "subject": [f"S{i}" for i in range(len(groups))],
            "group": groups,
            "timepoint": "baseline",
        },
        index=[f"s{i}" for i in range(len(groups))],
    )
    var = pd.DataFrame(
        {"symbol": [f"G{j}" for j in range(n_genes)]}, index=[f"G{j}" for j in range(n_genes)]
    )
    adata = ad.AnnData(X=values, obs=obs, var=var)
    adata.layers["normalized"] = values
    adata.layers["vst"] = np.log2(values)
    return adata, planted_high


def test_planted_unreachable_singscore_cutoff_warns_and_calls_the_planted_patients():
    adata, planted_high = planted_singscore_cohort()
    sets = {"SMALL_HIGH": [f"G{j}" for j in range(5)]}
    reference = (adata.obs["group"] == "control").to_numpy()
    ref_scores = scores.singscore(adata.layers["normalized"], {"s": np.arange(5)})["s"][reference]
    assert ref_scores.mean() + 2 * ref_scores.std(ddof=1) > 0.5
    with pytest.warns(positivity.PositivityWarning) as caught:
        table = scores.score_samples(adata, sets, ["singscore"], reference)
    message = str(caught[0].message)
    assert "SMALL_HIGH / singscore" in message and "0.5" in message
    assert f"{ref_scores.mean() + 2 * ref_scores.std(ddof=1):.4g}" in message
    assert set(table["positivity_rule"]) == {"reference_quantile"}
    patients = table["group"] == "patient"
    calls = table.loc[patients, "positive"].to_numpy()
    assert (calls == planted_high[patients.to_numpy()]).mean() >= 0.9
    assert calls[planted_high[patients.to_numpy()]].all()


def test_mixture_rule_in_score_samples_and_fits_table():
    adata, planted_high = planted_singscore_cohort()
    sets = {"SMALL_HIGH": [f"G{j}" for j in range(5)]}
    reference = (adata.obs["group"] == "control").to_numpy()
    patients = scores.baseline_patients(adata.obs, "patient", "baseline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", positivity.MixtureWarning)
        table = scores.score_samples(
            adata, sets, ["singscore", "zscore_mean"], reference, rule="mixture",
            mixture_samples=patients,
        )  # fmt: skip
    assert set(table["positivity_rule"]) == {"mixture"}
    calls = table[(table["method"] == "singscore") & (table["group"] == "patient")]["positive"]
    assert (calls.to_numpy() == planted_high[patients]).mean() >= 0.9
    fits = scores.mixture_fits(table, adata.obs_names[patients])
    assert list(fits["method"]) == ["singscore", "zscore_mean"]
    row = fits.iloc[0]
    assert row["cutoff"] == pytest.approx(
        table.loc[table["method"] == "singscore", "threshold"].iloc[0]
    )
    assert {"weight_low", "mean_high", "sd_high", "bic_one", "bic_two", "ashman_d"} <= set(
        fits.columns
    )


def test_attainable_ranges():
    cols = np.arange(3)
    assert scores.attainable_range("singscore", cols, 50) == (-0.5, 0.5)
    assert scores.attainable_range("module_activity", cols, 50) == (-100.0, 100.0)
    assert scores.attainable_range("zscore_sum", cols, 50) == (-np.inf, np.inf)
    low, high = scores.attainable_range("ssgsea", cols, 50)
    values = np.random.default_rng(0).normal(size=(20, 50))
    es = scores.ssgsea(values, {"s": cols})["s"]
    assert low < es.min() and es.max() < high


def test_a_lone_outlier_is_not_a_second_group():
    values = np.r_[np.random.default_rng(5).normal(0.0, 1.0, 12), 40.0]
    with pytest.warns(positivity.MixtureWarning, match=r"smaller component 1\.0 scores"):
        fit = positivity.mixture_cutoff(values, seed=1)
    assert not fit.bimodal


def test_the_default_stage_says_which_rule_made_each_call(tmp_path, caplog):
    """The planted singscore case through the score_ifn stage with the default settings: the
    fallback is warned about, logged, and named in ifn_scores.tsv and the saved cut-offs."""
    planted, planted_high = planted_singscore_cohort()
    counts = pd.DataFrame(
        planted.layers["normalized"].T.astype(int), index=planted.var_names,
        columns=planted.obs_names,
    )  # fmt: skip
    samples = planted.obs.assign(sample=planted.obs_names)
    adata = data.normalize(data.build_anndata(counts, samples))
    data.write_h5ad(adata, tmp_path / "cohort.h5ad")
    gmt = tmp_path / "small.gmt"
    gmt.write_text("SMALL_HIGH\tplanted\t" + "\t".join(f"G{j}" for j in range(5)) + "\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scores"].update(
        gene_sets=[str(gmt)], signatures=["SMALL_HIGH"], type2_signature=None,
        primary_signature="SMALL_HIGH",
    )  # fmt: skip
    inputs = {
        "normalized": str(tmp_path / "cohort.h5ad"),
        "gene_sets": score_gene_set_files(validate_config(copy.deepcopy(config))),
        "aliases": aliases_file(),
    }
    outputs = {
        key: str(tmp_path / f"{key}.{'png' if key in PNG else 'tsv'}")
        for key in ["scores", "obs", "agreement", "type_contrast", "mixture_fits", *PNG]
    }
    outputs.update({f"reference_{k}": str(tmp_path / "ref" / v) for k, v in FILES.items()})
    with caplog.at_level("INFO"), pytest.warns(positivity.PositivityWarning) as caught:
        warnings.simplefilter("ignore", positivity.MixtureWarning)
        run_stage("score_ifn", config, inputs, outputs)
    assert any("SMALL_HIGH / singscore" in str(w.message) for w in caught)
    assert "SMALL_HIGH / singscore: positivity calls by the reference_quantile rule" in caplog.text
    table = pd.read_csv(outputs["scores"], sep="\t")
    rules = table.drop_duplicates("method").set_index("method")["positivity_rule"]
    assert rules["singscore"] == "reference_quantile"
    assert table["positivity_rule"].isin(positivity.RULES).all()
    sing = table[(table["method"] == "singscore") & (table["group"] == "patient")]
    high = planted_high[(planted.obs["group"] == "patient").to_numpy()]
    assert (sing["positive"].to_numpy() == high).mean() >= 0.9 and sing["positive"][high].all()
    cutoffs = pd.read_csv(outputs["reference_cutoffs"], sep="\t").set_index("method")
    assert cutoffs.loc["singscore", "rule"] == "reference_quantile"
    # pydeseq2 fell back to the mean dispersion trend here; the saved reference holds it and
    # reproduces the run's scores.
    ref = reference.read_reference(tmp_path / "ref")
    assert ref.meta["vst_fit_type"] == "mean" and ref.dispersion["extraPois"] == 0.0
    again = reference.score_with_reference(adata[::3].copy(), ref)
    merged = table.merge(again, on=["sample", "signature", "method"], validate="1:1")
    np.testing.assert_allclose(merged["score_y"], merged["score_x"], rtol=1e-9)
    vst = data.vst_parametric(adata.layers["normalized"], *ref.dispersion.values())
    np.testing.assert_allclose(vst, adata.layers["vst"], rtol=1e-12)
