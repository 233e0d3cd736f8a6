import time

import numpy as np
import pandas as pd
import pytest
from conftest import shared_data

from ifnsig import data, de, demo, enrichment, genesets, response
from ifnsig.errors import InputError
from ifnsig.validation import validate_config

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("de")


def sheet(n_subjects=4, timepoints=("baseline", "month3"), extra=None):
    rows = []
    for i in range(n_subjects):
        for tp in timepoints:
            rows.append(
                {
                    "sample": f"S{i}_{tp}",
                    "subject": f"S{i}",
                    "group": "patient",
                    "timepoint": tp,
                    "batch": f"b{i % 2}",
                    "sex": "female",
                }
            )
    frame = pd.DataFrame(rows)
    if extra is not None:
        frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    return frame.set_index("sample", drop=False).rename_axis(None)


def config(**de_settings):
    cfg = {"timepoints": ["baseline", "month3"], "de": de_settings}
    return validate_config(cfg)


def test_default_contrasts_are_followups_vs_baseline():
    cfg = validate_config({"timepoints": ["baseline", "month3", "month6"]})
    names = [c.name for c in de.contrasts_from_config(cfg)]
    assert names == ["month3_vs_baseline", "month6_vs_baseline"]


def test_contrasts_sharing_a_design_are_fitted_once():
    cfg = validate_config({"timepoints": ["baseline", "month3", "month6"]})
    fits = de.plan_fits(sheet(timepoints=("baseline", "month3", "month6")), cfg)
    assert len(fits) == 1
    assert fits[0].formula == "~subject + timepoint"
    assert len(fits[0].contrasts) == 2


def test_unknown_level_fails_fast_listing_valid_levels():
    cfg = config(contrasts=[{"name": "bad", "test": "month9", "reference": "baseline"}])
    start = time.perf_counter()
    with pytest.raises(InputError, match="valid levels: baseline, month3"):
        de.plan_fits(sheet(), cfg)
    assert time.perf_counter() - start < 10


def test_subjects_missing_one_side_are_dropped_with_warning(caplog):
    samples = sheet(
        extra=[
            {
                "sample": "X_month3",
                "subject": "X",
                "group": "patient",
                "timepoint": "month3",
                "batch": "b0",
                "sex": "male",
            }
        ]
    )
    fits = de.plan_fits(samples, config())
    assert "X_month3" not in fits[0].samples
    assert "X" in caplog.text


def test_no_paired_subject_left_is_an_error():
    samples = sheet(timepoints=("baseline",))
    samples = pd.concat(
        [
            samples,
            sheet(timepoints=("month3",))
            .rename(lambda s: s + "b")
            .assign(subject=lambda f: f["subject"] + "b"),
        ]
    )
    with pytest.raises(InputError, match="no subject with both"):
        de.plan_fits(samples, config())


def test_confounded_covariate_is_an_error_naming_both_columns():
    samples = sheet()
    samples["visit"] = samples["timepoint"]
    cfg = config(
        covariates=["visit"],
        contrasts=[{"name": "u", "test": "month3", "reference": "baseline", "paired": False}],
    )
    with pytest.raises(InputError, match="'visit' is completely confounded with .*'timepoint'"):
        de.plan_fits(samples, cfg)


def test_subject_level_covariate_is_absorbed_in_paired_design(caplog):
    fits = de.plan_fits(sheet(), config(covariates=["sex"]))
    assert fits[0].formula == "~subject + timepoint"
    assert "absorbed" in caplog.text


def response_setup(**contrast):
    """Six patients at baseline and month3; CMAS gains of 0..5 make S3-S5 responders."""
    samples = sheet(n_subjects=6)
    clinical = pd.DataFrame(
        [
            {"subject": f"S{i}", "timepoint": tp, "CMAS": 30 + (i if tp == "month3" else 0)}
            for i in range(6)
            for tp in ("baseline", "month3")
        ]
    )
    clinical.loc[(clinical.subject == "S5") & (clinical.timepoint == "month3"), "CMAS"] = None
    cfg = validate_config(
        {
            "timepoints": ["baseline", "month3"],
            "clinical": "clinical.tsv",
            "clinical_measures": {"CMAS": {"higher_is_better": True, "min": 0, "max": 52}},
            "linkage": {
                "responses": [
                    {"name": "CMAS_gain_3", "type": "improvement", "measure": "CMAS", "at_least": 3}
                ]
            },
            "de": {
                "contrasts": [
                    {
                        "name": "responders_at_baseline",
                        "response": "CMAS_gain_3",
                        "subset": {"timepoint": ["baseline"]},
                        **contrast,
                    }
                ]
            },
        }
    )
    return samples, clinical, cfg


def response_calls(clinical: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """The response calls the call_responses job makes from ``clinical``."""
    return response.clinical_responses(clinical, cfg)[1]


def test_response_contrast_takes_the_clinical_calls(caplog):
    samples, clinical, cfg = response_setup()
    (fit,) = de.plan_fits(samples, cfg, clinical, response_calls(clinical, cfg))
    column = "response_CMAS_gain_3_month3"
    assert fit.formula == f"~{column}" and not fit.paired
    # S5 has no month-3 CMAS, so no call: left out, and the log says so.
    assert fit.samples == [f"S{i}_baseline" for i in range(5)]
    assert "S5" in caplog.text
    calls = fit.metadata[column].astype(str).to_dict()
    assert calls == {
        "S0_baseline": "non_responder",
        "S1_baseline": "non_responder",
        "S2_baseline": "non_responder",
        "S3_baseline": "responder",
        "S4_baseline": "responder",
    }
    assert list(fit.metadata[column].cat.categories) == ["non_responder", "responder"]


@pytest.mark.parametrize(
    "contrast, clinical_given, message",
    [
        ({"response": "CMAS_gain_9"}, True, "not defined under linkage.responses; use one of"),
        ({"paired": True}, True, "cannot be paired on subject"),
        ({"response_at": "baseline"}, True, "not a follow-up timepoint; use one of month3"),
        ({}, False, "needs the clinical table"),
    ],
)
def test_response_contrast_errors(contrast, clinical_given, message):
    samples, clinical, cfg = response_setup(**contrast)
    with pytest.raises(InputError, match=message):
        given = response_calls(clinical, cfg) if clinical_given else None
        de.plan_fits(samples, cfg, clinical, given)


def airway():
    folder = shared_data("airway")
    # All 64,102 genes, zeros included, as R was given them: the share of all-zero genes
    # sets the grid of independent-filtering thresholds.
    counts = pd.read_csv(folder / "airway_counts.csv.gz", index_col=0)
    coldata = pd.read_csv(folder / "airway_coldata.csv", index_col=0)
    samples = pd.DataFrame(
        {
            "sample": coldata.index,
            "subject": coldata["cell"],
            "group": "patient",
            "timepoint": coldata["dex"],
        },
        index=coldata.index,
    )
    return data.build_anndata(counts[samples.index], samples), samples, folder


AIRWAY_KNOWN_UP = {
    "ENSG00000163884": "KLF15",
    "ENSG00000179094": "PER1",
    "ENSG00000096060": "FKBP5",
    "ENSG00000109906": "ZBTB16",
    "ENSG00000103196": "CRISPLD2",
}
SPARCL1, CACNB2 = "ENSG00000152583", "ENSG00000165995"


def airway_fit():
    adata, samples, folder = airway()
    cfg = validate_config({"timepoints": ["untrt", "trt"]})
    (fit,) = de.plan_fits(samples, cfg)
    table = de.run_fit(adata, fit, samples, alpha=0.1, n_cpus=2, shrink=False)["trt_vs_untrt"]
    reference = pd.read_csv(
        folder / "reference_deseq2" / "deseq2_1.38.3_cell+dex_results.csv.gz", index_col=0
    )
    return adata, table.set_index("gene_id"), reference, folder


# ``attr(dispersionFunction(dds), "dispPriorVar")`` of R DESeq2 1.38.3 run as in
# reference_deseq2/run_deseq2_airway.R.
R_PRIOR_VARIANCE = 0.5285285


def check_airway_matches_r_deseq2() -> int:
    """The whole airway fit, our own Monte Carlo prior variance included, against R DESeq2's
    tables (benchmarks/airway_vs_r.py; the suite fits airway once, with R's prior variance,
    in test_airway_with_r_prior_variance_is_r). Returns the number of genes at padj < 0.1.
    """
    _, table, reference, _ = airway_fit()
    merged = table.join(reference, rsuffix="_r", how="inner")
    expressed = merged[merged["baseMean"] > 10]
    r = np.corrcoef(expressed["log2FoldChange"], expressed["log2FoldChange_r"])[0, 1]
    assert r >= 0.999
    n_sig = int((table["padj"] < 0.1).sum())
    assert abs(n_sig - 4819) / 4819 <= 0.03, n_sig
    # SPARCL1 and CACNB2 are 0.6 % apart in Wald statistic in R (24.86 vs 24.71); the Monte
    # Carlo prior variance (0.54 here, 0.53 in R) is enough to swap them.
    assert set(table.sort_values("pvalue").index[:2]) == {SPARCL1, CACNB2}
    return n_sig


def test_airway_with_r_prior_variance_is_r(monkeypatch):
    """Given DESeq2's own Monte Carlo prior variance, every other step reproduces DESeq2; our
    Monte Carlo estimate of it, from the same residuals, is R's to Monte Carlo error."""
    from ifnsig.de import deseq2_compat

    ours = []
    estimate = deseq2_compat.monte_carlo_prior_variance

    def r_prior_variance(*args, **kwargs):
        ours.append(estimate(*args, **kwargs))
        return R_PRIOR_VARIANCE

    monkeypatch.setattr(deseq2_compat, "monte_carlo_prior_variance", r_prior_variance)
    adata, table, reference, folder = airway_fit()
    assert len(ours) == 1 and abs(ours[0] - R_PRIOR_VARIANCE) < 0.03, ours
    assert int((table["padj"] < 0.1).sum()) == 4819
    assert table.sort_values("pvalue").index[0] == SPARCL1
    tested = table["pvalue"].notna()
    assert np.array_equal(table["padj"].notna(), reference.loc[table.index, "padj"].notna())
    relative = (table["stat"] / reference.loc[table.index, "stat"] - 1)[tested].abs()
    assert relative.median() < 1e-5 and relative.quantile(0.999) < 1e-3
    rows = table.loc[list(AIRWAY_KNOWN_UP)]
    assert (rows["padj"] < 0.1).all() and (rows["log2FoldChange"] > 0).all()
    sizes = pd.read_csv(folder / "reference_deseq2" / "deseq2_1.38.3_sizefactors.csv", index_col=0)
    # The median of ratios takes only the genes counted in every sample (DESeq2's
    # estimateSizeFactorsForMatrix, pydeseq2's deseq2_norm_fit): normalize on those gives the
    # size factors of all 64,102 genes, without the VST's dispersion fit of the others.
    counted = data.filter_genes(adata, 1, adata.n_obs)
    factors = data.normalize(counted, n_cpus=2).obs["size_factor"]
    assert np.allclose(factors.loc[sizes.index], sizes.iloc[:, 0], atol=1e-4)


@pytest.fixture(scope="module")
def kang_de():
    folder = shared_data("kang2018_ifnb")
    counts = pd.read_csv(folder / "pseudobulk_counts_donor_x_stim.csv.gz", index_col=0)
    counts = counts[counts.sum(axis=1) >= 10]
    info = pd.read_csv(folder / "pseudobulk_samples.csv", index_col=0, dtype={"donor": str})
    samples = pd.DataFrame(
        {
            "sample": info.index,
            "subject": "D" + info["donor"],
            "group": "patient",
            "timepoint": info["stim"],
        },
        index=info.index,
    )
    adata = data.build_anndata(counts[samples.index], samples)
    cfg = validate_config({"timepoints": ["CTRL", "STIM"]})
    (fit,) = de.plan_fits(samples, cfg)
    table = de.run_fit(adata, fit, samples, alpha=0.1, n_cpus=2)["STIM_vs_CTRL"]
    return table, folder


def test_kang_paired_matches_r_deseq2(kang_de):
    table, folder = kang_de
    reference = pd.read_csv(
        folder / "reference_deseq2" / "deseq2_1.38.3_donor+stim_results.csv.gz", index_col=0
    )
    merged = table.set_index("gene_id").join(reference, rsuffix="_r", how="inner")
    r = np.corrcoef(merged["log2FoldChange"], merged["log2FoldChange_r"])[0, 1]
    assert r >= 0.99
    isgs = table.set_index("symbol").loc[["ISG15", "IFIT1", "RSAD2", "MX1"]]
    assert (isgs["padj"] < 0.05).all() and (isgs["log2FoldChange"] > 2).all()
    assert (
        table["log2FoldChange_shrunk"].abs().le(table["log2FoldChange"].abs() + 1e-6).mean() > 0.95
    )


def test_kang_prerank_puts_hallmark_ifn_alpha_on_top(kang_de):
    table, _ = kang_de
    hallmark = genesets.read_gmt(shared_data("genesets", "h.all.v7.1.symbols.gmt"))
    result = enrichment.prerank(enrichment.ranking(table), hallmark, permutations=1000, seed=1)
    top = result[result["nes"] > 0].sort_values("nes", ascending=False).head(3)
    assert "HALLMARK_INTERFERON_ALPHA_RESPONSE" in set(top["gene_set"])
    assert result.set_index("gene_set").loc["HALLMARK_INTERFERON_ALPHA_RESPONSE", "fdr"] < 0.05


def test_blocked_backend_gives_the_same_tables_as_default():
    from ifnsig.simulate import CohortSpec, simulate_cohort

    cohort = simulate_cohort(
        CohortSpec(n_patients=10, n_controls=2, n_genes=400, n_treatment_genes=30, seed=3)
    )
    samples = cohort.samples.set_index("sample", drop=False).rename_axis(None)
    adata = data.build_anndata(cohort.counts, samples)
    cfg = validate_config({"timepoints": ["baseline", "month3", "month6"]})
    (fit,) = de.plan_fits(samples, cfg)
    tables = {
        backend: de.run_fit(adata, fit, samples, n_cpus=1, inference=backend)
        for backend in ["default", "blocked"]
    }
    for name in ["month3_vs_baseline", "month6_vs_baseline"]:
        a, b = tables["default"][name], tables["blocked"][name]
        # The backends' own equivalence is tested in test_blocked_inference.py; here the
        # workflow's choice of backend must not change the tables.
        tolerances = {"log2FoldChange": 1e-6, "stat": 1e-3, "pvalue": 1e-3}
        for column, rtol in tolerances.items():
            assert np.allclose(a[column], b[column], rtol=rtol, atol=1e-4, equal_nan=True), column
        # apeGLM's optimiser amplifies rounding-level differences of the dispersions for a
        # few genes; the shrunk values agree closely for nearly all and nowhere widely.
        shrunk = (a["log2FoldChange_shrunk"] - b["log2FoldChange_shrunk"]).abs()
        assert shrunk.quantile(0.99) < 1e-3 and shrunk.max() < 0.05
        near = (a["padj"] - 0.05).abs() < 1e-3
        assert ((a["padj"] < 0.05) == (b["padj"] < 0.05))[~near].all()


def test_shrinkage_is_skipped_for_designs_with_too_many_coefficients(caplog):
    from ifnsig.simulate import CohortSpec, simulate_cohort

    cohort = simulate_cohort(
        CohortSpec(n_patients=4, n_controls=2, n_genes=400, n_treatment_genes=20, seed=2)
    )
    samples = cohort.samples.set_index("sample", drop=False).rename_axis(None)
    adata = data.build_anndata(cohort.counts, samples)
    (fit,) = de.plan_fits(
        samples, validate_config({"timepoints": ["baseline", "month3", "month6"]})
    )
    # ~subject + timepoint on 4 subjects and 3 timepoints: 6 coefficients.
    skipped = de.run_fit(adata, fit, samples, shrink_max_coefficients=5)["month3_vs_baseline"]
    assert skipped["log2FoldChange_shrunk"].isna().all()
    assert "no apeGLM shrinkage" in caplog.text
    kept = de.run_fit(adata, fit, samples, shrink_max_coefficients=6)["month3_vs_baseline"]
    assert kept["log2FoldChange_shrunk"].notna().sum() > 250


@pytest.fixture(scope="module")
def demo_cohort():
    """The shipped demo as the workflow filters it: AnnData, design, config."""
    return demo.filtered_cohort()


def demo_fit(demo_cohort, contrasts=None, **settings):
    """The tables of the demo's fit of ``contrasts`` (default: the configured ones).

    ``settings`` override keys of ``de`` (e.g. ``wald_distribution``); the DE stage's own
    steps: samples from the AnnData obs, response calls from the clinical table.
    """
    adata, design, cfg = demo_cohort
    contrasts = contrasts or cfg["de"]["contrasts"]
    cfg = {**cfg, "de": {**cfg["de"], "contrasts": contrasts, **settings}}
    samples = de.cohort_samples(adata.obs)
    calls = response_calls(design.clinical, cfg) if de.uses_responses(cfg) else None
    (fit,) = de.plan_fits(samples, cfg, design.clinical, calls)
    return de.run_fit(
        adata,
        fit,
        samples,
        alpha=cfg["de"]["alpha"],
        n_cpus=2,
        shrink=False,
        wald_distribution=cfg["de"]["wald_distribution"],
    )


def assert_same_as_r(ours: pd.DataFrame, expected: pd.DataFrame, name: str) -> None:
    ours, expected = ours.set_index("gene_id"), expected.set_index("gene_id")
    assert set(ours.index) == set(expected.index)
    expected = expected.loc[ours.index]
    relative = (ours["stat"] / expected["stat"] - 1).abs()
    assert relative.median() < 1e-5, name
    # In the tail, statistics within 1e-4 of zero differ relatively by the IRLS stopping
    # rule alone: differences there are taken relative to at least 0.1.
    tail = (ours["stat"] - expected["stat"]).abs() / expected["stat"].abs().clip(lower=0.1)
    assert tail.quantile(0.999) < 1e-3, name
    assert (ours["padj"].isna() == expected["padj"].isna()).all(), name
    assert ((ours["padj"] < 0.1) == (expected["padj"] < 0.1)).all(), name
    assert ((ours["padj"] < 0.05) == (expected["padj"] < 0.05)).all(), name


def test_demo_paired_fit_is_r_deseq2(demo_cohort):
    """The shipped demo's paired fit (75 samples, 25 subjects) equals R DESeq2 1.38.3's.

    The reference was written by tests/data/demo_deseq2.R on the same filtered counts.
    """
    from conftest import REPO

    tables = demo_fit(demo_cohort)
    reference = pd.read_csv(REPO / "tests" / "data" / "demo_deseq2_1.38.3.tsv.gz", sep="\t")
    for name, expected in reference.groupby("contrast"):
        assert_same_as_r(tables[name], expected, name)


def test_demo_responder_contrast_is_r_deseq2(demo_cohort):
    """Unpaired, 19 vs 6 patients at baseline: the dense path with Cook's outlier refit.

    The reference was written by tests/data/demo_responders_deseq2.R.
    """
    from conftest import REPO

    contrast = {
        "name": "CMAS_responders_at_baseline",
        "response": "CMAS_gain_3",
        "response_at": "month6",
        "subset": {"group": ["patient"], "timepoint": ["baseline"]},
    }
    (table,) = demo_fit(demo_cohort, [contrast]).values()
    reference = pd.read_csv(
        REPO / "tests" / "data" / "demo_responders_deseq2_1.38.3.tsv.gz", sep="\t"
    )
    assert_same_as_r(table, reference, contrast["name"])


def test_clinical_measure_as_covariate_is_checked_at_planning():
    """Steroid dose and the like come from the clinical table, joined on subject and timepoint."""
    samples, clinical, _ = response_setup()
    cfg = config(covariates=["CMAS"])
    complete = clinical.fillna({"CMAS": 30})
    (fit,) = de.plan_fits(samples, cfg, complete)
    assert fit.formula == "~subject + CMAS + timepoint"
    assert fit.metadata["CMAS"].dtype.kind == "f"
    # S5 has no month-3 CMAS in the incomplete table.
    with pytest.raises(InputError, match="'CMAS' has no value for sample\\(s\\) S5_month3"):
        de.plan_fits(samples, cfg, clinical)
    with pytest.raises(InputError, match="not a column of the sample sheet or the clinical"):
        de.plan_fits(samples, cfg)


def demo_reference(name: str, table: str) -> pd.DataFrame:
    """One table of a reference written by ``tests/data/<name>.R`` (R DESeq2 1.38.3)."""
    from conftest import REPO

    reference = pd.read_csv(REPO / "tests" / "data" / f"{name}_1.38.3.tsv.gz", sep="\t")
    return reference[reference["table"] == table]


def assert_lfc_same_as_r(ours: pd.DataFrame, expected: pd.DataFrame, name: str) -> None:
    ours, expected = ours.set_index("gene_id"), expected.set_index("gene_id").loc[ours["gene_id"]]
    for column in ("log2FoldChange", "lfcSE"):
        difference = (ours[column] - expected[column]).abs()
        assert (difference / expected[column].abs()).median() < 1e-5, (name, column)
        tail = difference / expected[column].abs().clip(lower=0.1)
        assert tail.quantile(0.999) < 1e-3, (name, column)


CMAS_CHANGE = {
    "name": "CMAS_change_month6",
    "test": "month6",
    "reference": "baseline",
    "between": {"response": "CMAS_gain_3", "response_at": "month6"},
    "subset": {"group": ["patient"]},
}


def test_demo_interaction_is_r_deseq2(demo_cohort):
    """Responders (19) vs non-responders (6), change from baseline to month6, Wald: the
    interaction and the change within each group equal R DESeq2's on the vignette's nested
    design (reference by tests/data/demo_interaction_deseq2.R, which computes the calls
    from config/clinical.tsv: they are ifnsig's)."""
    from conftest import REPO

    adata, design, cfg = demo_cohort
    ours = response_calls(design.clinical, cfg)
    ours = ours[(ours["response"] == "CMAS_gain_3") & (ours["timepoint"] == "month6")]
    theirs = pd.read_csv(REPO / "tests" / "data" / "demo_cmas_gain_3_calls.tsv", sep="\t")
    assert ours.set_index("subject")["responder"].astype(str).to_dict() == (
        theirs.set_index("subject")["responder"].map({True: "True", False: "False"}).to_dict()
    )
    tables = demo_fit(demo_cohort, [CMAS_CHANGE])
    name = CMAS_CHANGE["name"]
    pairs = {
        name: "interaction",
        f"{name}.within_non_responder": "within_non_responder",
        f"{name}.within_responder": "within_responder",
    }
    assert set(tables) == set(pairs)
    for table, reference in pairs.items():
        expected = demo_reference("demo_interaction_deseq2", reference)
        assert_same_as_r(tables[table], expected, table)
        assert_lfc_same_as_r(tables[table], expected, table)
    # The planted biology: ISGs fall more in responders.
    interaction = tables[name].set_index("symbol")
    assert (interaction.loc[["IFI27", "ISG15", "RSAD2"], "log2FoldChange"] < -1).all()
    assert (interaction.loc[["IFI27", "ISG15", "RSAD2"], "padj"] < 0.05).all()


def test_demo_interaction_lrt_is_r_deseq2(demo_cohort):
    """The same comparison by DESeq2's LRT against ~ subject + timepoint, with the
    interaction's log2FoldChange and lfcSE (tests/data/demo_interaction_deseq2.R)."""
    contrast = {
        **CMAS_CHANGE,
        "name": "CMAS_trajectory",
        "lrt": True,
        "subset": {"group": ["patient"], "timepoint": ["baseline", "month6"]},
    }
    tables = demo_fit(demo_cohort, [contrast])
    expected = demo_reference("demo_interaction_deseq2", "interaction_lrt")
    assert_same_as_r(tables["CMAS_trajectory"], expected, "interaction LRT")
    assert_lfc_same_as_r(tables["CMAS_trajectory"], expected, "interaction LRT")


def test_demo_time_lrt_is_r_deseq2(demo_cohort):
    """Any change over the three timepoints: LRT of ~ subject + timepoint against ~ subject
    on 75 samples, month6 vs baseline reported (tests/data/demo_time_lrt_deseq2.R)."""
    contrast = {"name": "any_change", "lrt": True, "subset": {"group": ["patient"]}}
    (table,) = demo_fit(demo_cohort, [contrast]).values()
    expected = demo_reference("demo_time_lrt_deseq2", "time_lrt")
    assert_same_as_r(table, expected, "time LRT")
    assert_lfc_same_as_r(table, expected, "time LRT")


def test_demo_paired_fit_with_t_reference_is_r_deseq2(demo_cohort):
    """DESeq(useT = TRUE): t with 75 - 27 degrees of freedom (tests/data/demo_paired_t_deseq2.R)."""
    tables = demo_fit(demo_cohort, wald_distribution="t")
    normal = demo_fit(demo_cohort)
    for name in ("month3_vs_baseline", "month6_vs_baseline"):
        expected = demo_reference("demo_paired_t_deseq2", name)
        assert_same_as_r(tables[name], expected, name)
        relative = (
            tables[name]["pvalue"]
            / expected.set_index("gene_id").loc[tables[name]["gene_id"], "pvalue"].to_numpy()
            - 1
        ).abs()
        assert relative.median() < 1e-4, name
        # The t reference calls fewer genes than the normal one.
        assert (tables[name]["padj"] < 0.05).sum() < (normal[name]["padj"] < 0.05).sum()


UNPAIRED_LEFT_OUT = [
    *(f"JDM0{i}_baseline" for i in (1, 2, 3)),
    *(f"JDM0{i}_{tp}" for i in (4, 5) for tp in ("month3", "month6")),
    "JDM06_baseline",
    "JDM06_month3",
]


def test_demo_unpaired_subjects_kept_are_r_deseq2(demo_cohort, caplog):
    """de.keep_unpaired_subjects: true fits the 66 samples DESeq2 was given, three subjects
    without baseline and three with one sample (tests/data/demo_unpaired_subjects_deseq2.R);
    the default leaves those six subjects out."""
    adata, design, cfg = demo_cohort
    reduced = (adata[~adata.obs_names.isin(UNPAIRED_LEFT_OUT)].copy(), design, cfg)
    with caplog.at_level("INFO"):
        tables = demo_fit(reduced, keep_unpaired_subjects=True)
    assert "6 subject(s) lacking 'baseline' or every test level are kept" in caplog.text
    for name in ("month3_vs_baseline", "month6_vs_baseline"):
        assert_same_as_r(tables[name], demo_reference("demo_unpaired_subjects_deseq2", name), name)
    samples = de.cohort_samples(reduced[0].obs)
    (fit,) = de.plan_fits(samples, {**cfg, "de": {**cfg["de"], "keep_unpaired_subjects": False}})
    assert len(fit.samples) == 57 and samples.loc[fit.samples, "subject"].nunique() == 19


def demo_stats(demo_cohort):
    """The Wald test (``DeseqStats`` after ``summary()``) and coefficient of the first contrast."""
    from pydeseq2.ds import DeseqStats

    adata, design, cfg = demo_cohort
    samples = de.cohort_samples(adata.obs)
    calls = response_calls(design.clinical, cfg) if de.uses_responses(cfg) else None
    (fit,) = de.plan_fits(samples, cfg, design.clinical, calls)
    dds, backend = de.fit_dataset(adata, fit, samples, n_cpus=2)
    columns = list(de.design_matrix(fit).columns)
    vector = next(iter(de.contrast_vectors(fit, fit.contrasts[0], columns).values()))
    stats = DeseqStats(dds, contrast=vector, inference=backend, quiet=True)
    stats.summary()
    return stats, columns[int(np.argmax(vector))]


def simulated_paired(n_subjects: int = 6, n_genes: int = 40, seed: int = 3):
    """Paired NB counts (2 timepoints), their ``~ subject + timepoint`` design and offsets."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), 2)
    time_ = np.tile([0.0, 1.0], n_subjects)
    design = np.column_stack(
        [np.ones(2 * n_subjects)]
        + [(subject == s).astype(float) for s in range(1, n_subjects)]
        + [time_]
    )
    base = rng.lognormal(3, 1.5, n_genes)
    lfc = np.where(rng.random(n_genes) < 0.3, rng.normal(0, 1.5, n_genes), 0.0)
    size_factors = rng.lognormal(0, 0.2, 2 * n_subjects)
    mu = (
        size_factors[:, None]
        * base
        * np.exp(rng.normal(0, 0.4, (n_subjects, n_genes))[subject] + time_[:, None] * lfc)
    )
    size = 1 / (0.05 + 1 / base)
    counts = rng.negative_binomial(size, size / (size + mu))
    return design, counts, size, np.log(size_factors)


@pytest.mark.parametrize("prior_scale", [0.1, 1.0])
def test_apeglm_map_is_pydeseq2s_nbinomglm(prior_scale):
    """Dense and subject-blocked Newton both reach the MAP of pydeseq2's apeGLM objective."""
    from pydeseq2.utils import nbinomFn, nbinomGLM
    from threadpoolctl import threadpool_limits

    from ifnsig.de import shrink

    design, counts, size, offset = simulated_paired()
    index = design.shape[1] - 1
    start = np.zeros((counts.shape[1], design.shape[1]))
    start[:, 0] = np.log(counts.mean(axis=0) + 0.5)
    blocked, converged = shrink.apeglm_map(design, counts, size, offset, index, prior_scale, start)
    assert converged.all()
    # The intercept column last: no subject block is detected, the dense system is used.
    order = [*range(1, design.shape[1]), 0]
    dense, _ = shrink.apeglm_map(
        design[:, order], counts, size, offset, index - 1, prior_scale, start[:, order]
    )
    assert np.abs(dense[:, np.argsort(order)] - blocked).max() < 1e-6
    other_modes = 0
    for j in range(counts.shape[1]):
        args = (design, counts[:, j], size[j], offset, shrink.NO_SHRINK_SCALE, prior_scale)
        with threadpool_limits(limits=1):  # threaded BLAS slows L-BFGS-B's tiny products
            theirs = nbinomGLM(*args, "L-BFGS-B", index)[0]
        ours = nbinomFn(blocked[j], *args, index)
        if abs(blocked[j, index] - theirs[index]) < 5e-3:
            # L-BFGS-B stops at a relative gain of 1e-8: ours is as low or lower.
            assert ours <= nbinomFn(theirs, *args, index) + 1e-9 * abs(ours)
            continue
        # The Cauchy prior can give a second mode: ours is then a local minimum.
        other_modes += 1
        for h in (-1e-4, 1e-4):
            moved = blocked[j].copy()
            moved[index] += h
            assert nbinomFn(moved, *args, index) > ours
    assert other_modes <= counts.shape[1] // 10


@pytest.mark.parametrize("system", ["blocked", "dense"])
def test_apeglm_map_gives_a_gene_the_same_bits_in_any_chunk(system):
    """A gene's MAP depends on its own data only: the DE split by gene shards shrinks each
    shard alone and must write the one-job fold changes byte for byte."""
    from ifnsig.de import shrink

    design, counts, size, offset = simulated_paired()
    index = design.shape[1] - 1
    # The intercept column last: no subject block is detected, the dense system is used.
    order = list(range(design.shape[1])) if system == "blocked" else [*range(1, index + 1), 0]
    design, index = design[:, order], order.index(index)
    start = np.zeros((counts.shape[1], design.shape[1]))
    start[:, order.index(0)] = np.log(counts.mean(axis=0) + 0.5)
    whole, _ = shrink.apeglm_map(design, counts, size, offset, index, 0.3, start)
    for a, b in [(0, 1), (1, 7), (7, 20), (20, counts.shape[1])]:
        part, _ = shrink.apeglm_map(
            design, counts[:, a:b], size[a:b], offset, index, 0.3, start[a:b]
        )
        assert np.array_equal(part, whole[a:b]), (a, b)


def test_apeglm_map_of_no_genes():
    from ifnsig.de import shrink

    design, counts, size, offset = simulated_paired()
    beta, converged = shrink.apeglm_map(
        design, counts[:, :0], size[:0], offset, 1, 0.5, np.zeros((0, design.shape[1]))
    )
    assert beta.shape == (0, design.shape[1]) and converged.shape == (0,)


def test_shrunk_fold_changes_are_pydeseq2s(demo_cohort):
    """ifnsig's vectorised apeGLM MAP gives pydeseq2's ``lfc_shrink`` on the demo's fit.

    pydeseq2's own per-gene fit (``lfc_shrink_nbinom_glm``, what ``lfc_shrink`` calls with
    the same prior) is run on a subset of genes: evenly spaced ones and those with the
    widest standard errors, where the Cauchy prior can give a second mode. (Dense designs:
    ``test_apeglm_map_is_pydeseq2s_nbinomglm``.)
    """
    from ifnsig.de.shrink import NO_SHRINK_SCALE, shrunk_lfc

    stats, coefficient = demo_stats(demo_cohort)
    ours = shrunk_lfc(stats, coefficient, n_cpus=2)
    assert (ours == stats.results_df["log2FoldChange"].to_numpy()).mean() < 0.01
    dds = stats.dds
    index = list(stats.LFC.columns).index(coefficient)
    scale = float(min(np.sqrt(stats._fit_prior_var(coeff_idx=index)), 1.0))
    genes = np.asarray(dds.non_zero_idx)
    se = stats.SE.to_numpy()[genes]
    subset = np.union1d(genes[:: len(genes) // 150], genes[np.argsort(-se)[:100]])
    lfcs, _, _ = stats.inference.lfc_shrink_nbinom_glm(
        design_matrix=stats.design_matrix.to_numpy(dtype=float),
        counts=np.asarray(dds.X)[:, subset],
        size=1 / dds.var["dispersions"].to_numpy()[subset],
        offset=np.log(dds.obs["size_factors"].to_numpy()),
        prior_no_shrink_scale=NO_SHRINK_SCALE,
        prior_scale=scale,
        optimizer="L-BFGS-B",
        shrink_index=index,
    )
    difference = np.abs(ours[subset] - lfcs[:, index] / np.log(2))
    assert np.median(difference) < 2e-4
    assert np.quantile(difference, 0.95) < 3e-3
    assert difference.max() < 0.03


# --- size factors from control genes (de.size_factor_genes) ------------------------------------


def demo_control_genes(demo_cohort, tmp_path) -> dict:
    """The demo's two control-gene sets of tests/data/demo_control_genes_deseq2.R, as the
    DE stage makes them: the scored signatures matched to the cohort, a file of gene IDs."""
    from ifnsig.de.size_factors import read_gene_list, size_factor_genes
    from ifnsig.scores import scored_signatures
    from ifnsig.settings import aliases_file, score_gene_set_files

    adata, _, cfg = demo_cohort
    signatures, _ = genesets.matched_signatures(
        scored_signatures(cfg["scores"]),
        adata.var["symbol"],
        score_gene_set_files(cfg),
        aliases_file(),
        min_genes=1,
    )
    listed = tmp_path / "every_seventh.txt"
    listed.write_text("# every seventh gene\n" + "\n".join(adata.var_names[::7]) + "\n")
    aliases = genesets.read_aliases(aliases_file())
    return {
        "exclude_signatures": size_factor_genes("exclude_signatures", adata.var, signatures),
        "every_seventh": size_factor_genes(
            str(listed), adata.var, listed=read_gene_list(listed), aliases=aliases
        ),
    }


def test_size_factors_from_control_genes_are_r_deseq2(demo_cohort, tmp_path):
    """estimateSizeFactors(dds, controlGenes = idx) of R DESeq2 1.38.3 on the demo's paired
    fit (tests/data/demo_control_genes_deseq2.R), in the one-job DE and in the DE split by
    genes (``de_size_factors``, which gives the same bits)."""
    from conftest import REPO

    from ifnsig.de.fit import choose_inference, deseq_dataset
    from ifnsig.de.shards import fit_positions, fit_size_factors

    adata, _, cfg = demo_cohort
    samples = de.cohort_samples(adata.obs)
    (fit,) = de.plan_fits(samples, cfg)
    reference = pd.read_csv(
        REPO / "tests" / "data" / "demo_control_genes_deseq2_1.38.3.tsv", sep="\t"
    )
    path = tmp_path / "cohort.h5ad"
    adata.write_h5ad(path)
    sub = adata[fit.samples]
    counts = pd.DataFrame(np.asarray(data.raw_counts(sub)), sub.obs_names, sub.var_names)
    backend = choose_inference(fit, samples, "auto", 2, 1)
    everything = deseq_dataset(counts, fit, backend)
    everything.fit_size_factors()
    for name, mask in demo_control_genes(demo_cohort, tmp_path).items():
        expected = reference[reference["control"] == name].set_index("sample")
        assert mask.sum() == expected["n_control"].iloc[0], name
        dds = deseq_dataset(counts, fit, backend, mask)
        dds.fit_size_factors()
        ours = dds.obs["size_factors"]
        assert set(ours.index) == set(expected.index), name
        assert np.allclose(ours, expected.loc[ours.index, "size_factor"], rtol=1e-12, atol=0)
        sharded = fit_size_factors(str(path), fit_positions(fit, adata.obs), adata.n_vars, mask)
        assert np.array_equal(sharded, ours.to_numpy()), name
        # Not the size factors of every gene.
        assert np.abs(np.log(everything.obs["size_factors"] / ours)).max() > 1e-3, name


def test_size_factors_from_every_gene_leave_the_tables_unchanged():
    """de.size_factor_genes: all gives DESeq2's default tables, byte for byte in every
    column, and so do control genes that are every gene."""
    from ifnsig.simulate import CohortSpec, simulate_cohort

    cohort = simulate_cohort(
        CohortSpec(n_patients=6, n_controls=2, n_genes=400, n_treatment_genes=20, seed=4)
    )
    samples = cohort.samples.set_index("sample", drop=False).rename_axis(None)
    adata = data.build_anndata(cohort.counts, samples)
    cfg = validate_config({"timepoints": ["baseline", "month3", "month6"]})
    assert cfg["de"]["size_factor_genes"] == "all"
    (fit,) = de.plan_fits(samples, cfg)
    default = de.run_fit(adata, fit, samples)
    every = np.ones(adata.n_vars, dtype=bool)
    for control_genes in (None, every):
        tables = de.run_fit(adata, fit, samples, control_genes=control_genes)
        for name, table in default.items():
            pd.testing.assert_frame_equal(tables[name], table, check_exact=True)


def test_size_factor_gene_settings_that_cannot_work_are_sentences(tmp_path):
    from ifnsig.de.size_factors import check_setting, read_gene_list, size_factor_genes

    var = pd.DataFrame(
        {"symbol": [f"SYM{i}" for i in range(30)]}, index=[f"ENSG{i:03d}" for i in range(30)]
    )
    missing = tmp_path / "absent.txt"
    with pytest.raises(InputError, match="size-factor gene list does not exist"):
        check_setting({"de": {"size_factor_genes": str(missing)}})
    few = tmp_path / "few.txt"
    few.write_text("ENSG000\nENSG001\n")
    with pytest.raises(InputError, match="names 2 gene"):
        read_gene_list(few)
    absent = tmp_path / "absent_genes.txt"
    absent.write_text("\n".join(f"OTHER{i}" for i in range(12)) + "\n")
    with pytest.raises(InputError, match="none of the 12 genes"):
        size_factor_genes(str(absent), var, listed=read_gene_list(absent))
    # IDs and symbols mixed, 9 found: below the 10 the median needs.
    mixed = ["ENSG000", "ENSG001", "ENSG002", "SYM3", "SYM4", "SYM5", "SYM6", "SYM7", "SYM8"]
    with pytest.raises(InputError, match="9 of the 30 genes are listed"):
        size_factor_genes("list.txt", var, listed=[*mixed, "OTHER"])
    mask = size_factor_genes("list.txt", var, listed=[*mixed, "SYM9"])
    assert mask.sum() == 10 and mask[:10].all()
    signatures = {"SET": [f"SYM{i}" for i in range(25)]}
    with pytest.raises(InputError, match="5 remain without the scored signatures"):
        size_factor_genes("exclude_signatures", var, signatures)
    assert size_factor_genes("all", var) is None


def test_design_matrix_is_formulaic_contrasts_and_built_once():
    """The fit's design from formulaic's sparse output: the columns and bits of the pandas
    frame pydeseq2's FormulaicContrasts builds; asked again, the same read-only frame."""
    from formulaic_contrasts import FormulaicContrasts

    rng = np.random.default_rng(0)
    meta = pd.DataFrame(
        {
            "subject": pd.Categorical(np.repeat([f"S{i}" for i in range(20)], 2)),
            "timepoint": pd.Categorical(np.tile(["T0", "T1"], 20)),
            "age": rng.normal(50, 10, 40),
            "sex": pd.Categorical(rng.choice(["F", "M"], 40)),
            "drug": pd.Categorical(np.repeat(rng.choice(["a", "b"], 20), 2)),
        },
        index=[f"s{i}" for i in range(40)],
    )
    for covariates, paired, between in [
        ([], True, None),
        (["age", "sex"], True, None),
        (["age"], False, None),
        ([], True, de.Groups("drug", "b", "a")),
    ]:
        fit = de.Fit("timepoint", "T0", paired, (), covariates, metadata=meta, between=between)
        formula = "~" + " + ".join(fit.terms)
        theirs = pd.DataFrame(FormulaicContrasts(meta, formula).design_matrix, index=meta.index)
        theirs = theirs.astype(float)
        design = de.design_matrix(fit)
        ours = design.iloc[:, : theirs.shape[1]]
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
        assert ours.to_numpy().tobytes() == theirs.to_numpy().tobytes()
        assert design.shape[1] == theirs.shape[1] + (1 if between else 0)
        assert de.design_matrix(fit) is design
        assert not design.to_numpy().flags.writeable
