import filecmp
import hashlib

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from scipy import stats

from ifnsig import simulate
from ifnsig.simulate import EXTRA_MEASURES, MEASURES, CohortSpec, simulate_cohort

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("simulate")

# The clinical columns and truth gene columns the demo had before the further core set
# measures, the drug genes and the differential-response truth were added, and the SHA-256
# of their text as the simulator wrote it then: later options must leave them as they were.
ORIGINAL_CLINICAL = [
    "subject", "timepoint", "CMAS", "MMT8", "CAT_BM_activity", "physician_global",
    "prednisone_mg_kg_day", "CK",
]  # fmt: skip
ORIGINAL_CLINICAL_SHA256 = "7472bc62069beff836f08592a319595b2c2e499febffdb9e29233c9aa49f7897"
ORIGINAL_GENES = [
    "gene_id", "symbol", "role", "base_mean", "dispersion", "ifn_loading", "treatment_lfc",
    "lfc_month3_vs_baseline", "lfc_month6_vs_baseline", "planted_de",
]  # fmt: skip
ORIGINAL_GENES_SHA256 = "de25a40c51928a27e37399ce86ecf7758b21ae8ff1bad7921a9650e18dc313ac"
SMALL = {"n_genes": 1000, "n_treatment_genes": 20}


def sha256(frame: pd.DataFrame, float_format: str) -> str:
    text = frame.to_csv(sep="\t", index=False, float_format=float_format)
    return hashlib.sha256(text.encode()).hexdigest()


def paired_change(cohort, gene_ids, subjects) -> np.ndarray:
    """Per subject, the mean over genes of log2(count + 1) at the last timepoint minus baseline."""
    log_counts = np.log2(cohort.counts.loc[list(gene_ids)] + 1)
    last = [f"{s}_month6" for s in subjects]
    first = [f"{s}_baseline" for s in subjects]
    return (log_counts[last].to_numpy() - log_counts[first].to_numpy()).mean(axis=0)


@pytest.fixture(scope="module")
def demo():
    return simulate_cohort()


def test_same_seed_same_cohort_and_other_seed_differs():
    spec = CohortSpec(n_patients=4, n_controls=3, n_genes=1000, n_treatment_genes=20)
    a, b = simulate_cohort(spec), simulate_cohort(spec)
    pd.testing.assert_frame_equal(a.counts, b.counts)
    pd.testing.assert_frame_equal(a.clinical, b.clinical)
    spec.seed += 1
    assert not simulate_cohort(spec).counts.equals(a.counts)


def test_demo_shape_follows_the_motivating_study():
    cohort = simulate_cohort(CohortSpec(n_genes=2000, n_treatment_genes=50))
    subjects = cohort.truth_subjects
    patients = subjects[subjects["group"] == "patient"]
    assert len(patients) == 25 and (subjects["group"] == "control").sum() >= 10
    assert patients["drug"].value_counts().to_dict() == {"ruxolitinib": 18, "tofacitinib": 7}
    assert cohort.samples.groupby("group")["timepoint"].nunique().to_dict() == {
        "control": 1,
        "patient": 3,
    }
    ranges = {"CMAS": (0, 52), "MMT8": (0, 80), "CAT_BM_activity": (0, 17)}
    for measure, (low, high) in ranges.items():
        assert cohort.clinical[measure].between(low, high).all()
    # Raw integer counts with the planted ISG induction at baseline in IFN-high patients.
    assert cohort.counts.to_numpy().dtype == np.int64
    high = patients.loc[patients["ifn_high"], "subject"]
    base_high = [f"{s}_baseline" for s in high]
    controls = subjects.loc[subjects["group"] == "control", "subject"]
    ratio = (
        cohort.counts.loc["IFI27", base_high].median()
        / cohort.counts.loc["IFI27", controls].median()
    )
    assert ratio > 4


def test_planted_qc_failures_are_recorded():
    spec = CohortSpec(
        n_patients=8,
        n_controls=3,
        n_genes=1000,
        n_treatment_genes=20,
        plant_sex_flip=True,
        plant_swap=True,
        plant_globin=True,
    )
    cohort = simulate_cohort(spec)
    planted = cohort.truth_samples["planted"]
    assert set(planted) - {""} == {"sex_flip", "swap", "globin"}
    assert (planted == "swap").sum() == 2


def test_shipped_demo_is_what_the_simulator_writes(tmp_path, demo):
    demo.write(tmp_path)
    # The counts are integers: the same bytes. The truth tables hold floats from exp and
    # products, whose last bit may differ between numpy builds (library_factor 1.791839382468607
    # against 1.7918393824686067 with numpy 2.4.6): the same values to 1e-13.
    assert filecmp.cmp(
        tmp_path / "counts.tsv.gz", REPO / "resources" / "demo" / "counts.tsv.gz", shallow=False
    )
    for name in ["truth_subjects.tsv", "truth_samples.tsv", "truth_genes.tsv"]:
        written, shipped = (
            pd.read_csv(folder / name, sep="\t", keep_default_na=False)
            for folder in (tmp_path, REPO / "resources" / "demo")
        )
        pd.testing.assert_frame_equal(written, shipped, check_exact=False, rtol=1e-13, atol=0)
    for name in ["samples.tsv", "clinical.tsv"]:
        assert filecmp.cmp(tmp_path / name, REPO / "config" / name, shallow=False), name


def test_default_spec_keeps_its_values_apart_from_the_new_columns(demo):
    assert sha256(demo.clinical[ORIGINAL_CLINICAL], "%.4g") == ORIGINAL_CLINICAL_SHA256
    assert sha256(demo.truth_genes[ORIGINAL_GENES], "%.6g") == ORIGINAL_GENES_SHA256
    assert list(demo.clinical.columns) == ORIGINAL_CLINICAL + EXTRA_MEASURES
    assert not demo.truth_genes["planted_drug_difference"].any()
    assert (demo.truth_genes["drug_specific"] == "").all()


def test_further_core_set_measures_stay_in_range_and_improve_with_the_ifn_fall(demo):
    clinical = demo.clinical
    for measure in EXTRA_MEASURES:
        low, high, _ = MEASURES[measure]
        assert clinical[measure].between(low, high).all(), measure
    assert ((clinical["CHAQ"] * 8) % 1 == 0).all()
    subjects = demo.truth_subjects.set_index("subject")
    wide = clinical.pivot(index="subject", columns="timepoint")
    falling = subjects.loc[wide.index, "ifn_high"] & subjects.loc[wide.index, "responder"]
    for measure in ["patient_global", "CHAQ", "extramuscular_activity", "aldolase"]:
        change = wide[(measure, "month6")] - wide[(measure, "baseline")]
        assert (
            change[falling].mean() < change[~falling].mean() < 0.5 * abs(change[falling].mean())
        ), measure


def test_null_cohort_plants_nothing_over_time():
    spec = CohortSpec(n_patients=60, n_controls=10, null=True, **SMALL)
    null = simulate_cohort(spec)
    planted = simulate_cohort(CohortSpec(n_patients=60, n_controls=10, **SMALL))
    truth = null.truth_genes
    patients = null.truth_subjects.query("group == 'patient'")["subject"]
    strong = truth.loc[truth["ifn_loading"] >= 3, "gene_id"]
    # The strong ISGs of the planted cohort fall by about a log2 unit; those of the null
    # cohort do not move across 60 paired patients.
    fall = paired_change(planted, strong, patients)
    assert fall.mean() < -0.5 and stats.wilcoxon(fall).pvalue < 1e-6
    change = paired_change(null, strong, patients)
    assert abs(change.mean()) < 0.15 and stats.wilcoxon(change).pvalue > 0.05
    treated = planted.truth_genes.loc[planted.truth_genes["treatment_lfc"] != 0, "gene_id"]
    assert stats.wilcoxon(paired_change(null, treated, patients)).pvalue > 0.05
    # Truth: nothing over time, the baseline IFN-high vs control difference kept.
    assert not truth["planted_de"].any()
    assert not truth["planted_responder_difference"].any()
    assert (truth.filter(like="lfc").to_numpy() == 0).all()
    assert (
        null.truth_subjects.loc[null.truth_subjects["group"] == "patient", "final_ifn_fraction"]
        == 1
    ).all()
    activity = null.truth_samples.pivot(index="subject", columns="timepoint", values="ifn_activity")
    assert (activity.loc[patients, "month6"] == activity.loc[patients, "baseline"]).all()
    high = null.truth_subjects.query("ifn_high")["subject"]
    controls = null.truth_subjects.query("group == 'control'")["subject"]
    ratio = (
        null.counts.loc["IFI27", [f"{s}_baseline" for s in high]].median()
        / null.counts.loc["IFI27", controls].median()
    )
    assert ratio > 4
    # The clinical course follows no expression: the strength of the IFN link changes nothing.
    linked = simulate_cohort(
        CohortSpec(n_patients=60, n_controls=10, null=True, clinical_link=5.0, **SMALL)
    )
    pd.testing.assert_frame_equal(linked.clinical, null.clinical)
    assert not null.clinical.drop(columns=["subject", "timepoint"]).equals(
        planted.clinical.drop(columns=["subject", "timepoint"])
    )


def test_null_refuses_what_would_plant_a_change_over_time():
    with pytest.raises(ValueError, match="null cohort plants nothing over time"):
        CohortSpec(null=True, n_drug_genes=10)
    with pytest.raises(ValueError, match="null cohort plants nothing over time"):
        CohortSpec(null=True, composition_shift={"neutrophil": 0.5})


def test_drug_genes_move_in_the_patients_on_their_drug_only():
    base = CohortSpec(n_patients=40, n_controls=6, n_genes=2000, n_treatment_genes=50)
    spec = CohortSpec(
        n_patients=40, n_controls=6, n_genes=2000, n_treatment_genes=50, n_drug_genes=41
    )
    cohort, without = simulate_cohort(spec), simulate_cohort(base)
    truth = cohort.truth_genes.set_index("gene_id")
    # Split in the order of spec.drugs, the first drug taking the larger half.
    assert truth["drug_specific"].value_counts().to_dict() == {
        "": 1959,
        "ruxolitinib": 21,
        "tofacitinib": 20,
    }
    assert (truth.loc[truth["drug_specific"] != "", "treatment_lfc"] == 0).all()
    patients = cohort.truth_subjects.query("group == 'patient'")
    for drug in spec.drugs:
        genes = truth.index[truth["drug_specific"] == drug]
        sign = np.sign(truth.loc[genes, "drug_lfc"]).to_numpy()
        for on in spec.drugs:
            subjects = patients.loc[patients["drug"] == on, "subject"]
            log_counts = np.log2(cohort.counts.loc[genes] + 1)
            change = (
                log_counts[[f"{s}_month6" for s in subjects]].to_numpy()
                - log_counts[[f"{s}_baseline" for s in subjects]].to_numpy()
            ).mean(axis=1) * sign
            if on == drug:
                assert change.mean() > 0.6, (drug, on)
            else:
                assert abs(change.mean()) < 0.2, (drug, on)
            expected = truth.loc[genes, f"lfc_month6_vs_baseline_{on}"]
            np.testing.assert_allclose(expected, truth.loc[genes, "drug_lfc"] if on == drug else 0)
        share = (patients["drug"] == drug).mean()
        np.testing.assert_allclose(
            truth.loc[genes, "lfc_month6_vs_baseline"], truth.loc[genes, "drug_lfc"] * share
        )
    assert truth.loc[truth["drug_specific"] != "", "planted_de"].all()
    assert (truth["planted_drug_difference"] == (truth["drug_specific"] != "")).all()
    # Drawn from their own stream: everything but the drug genes' counts stays as without them.
    others = truth.index[truth["drug_specific"] == ""]
    pd.testing.assert_frame_equal(cohort.counts.loc[others], without.counts.loc[others])
    pd.testing.assert_frame_equal(cohort.clinical, without.clinical)
    pd.testing.assert_frame_equal(cohort.truth_subjects, without.truth_subjects)
    pd.testing.assert_frame_equal(cohort.truth_samples, without.truth_samples)


def test_differential_response_truth_is_the_planted_gap(demo):
    truth = demo.truth_genes
    assert (truth["planted_responder_difference"] == (truth["ifn_loading"] >= 1)).all()
    # Recomputed from the planted IFN activity of each patient.
    subjects = demo.truth_subjects.query("group == 'patient'").set_index("subject")
    activity = demo.truth_samples.pivot(index="subject", columns="timepoint", values="ifn_activity")
    fall = (activity["month6"] - activity["baseline"]).loc[subjects.index]
    gap = fall[subjects["responder"]].mean() - fall[~subjects["responder"]].mean()
    column = "lfc_month6_vs_baseline_responders_minus_non_responders"
    np.testing.assert_allclose(truth[column], truth["ifn_loading"] * gap, atol=1e-12)
    assert truth.loc[truth["planted_responder_difference"], column].max() < -0.5
    # The gap follows the final-fraction ranges and vanishes when they are the same.
    same = CohortSpec(
        responder_final_fraction=(0.5, 0.6), non_responder_final_fraction=(0.5, 0.6), **SMALL
    )
    cohort = simulate_cohort(same)
    assert not cohort.truth_genes["planted_responder_difference"].any()
    final = cohort.truth_subjects.query("group == 'patient'")["final_ifn_fraction"]
    assert final.between(0.5, 0.6).all()
    weak = simulate_cohort(CohortSpec(non_responder_final_fraction=(0.05, 0.3), **SMALL))
    strong = simulate_cohort(CohortSpec(**SMALL)).truth_genes.set_index("gene_id")[column]
    weak_gap = weak.truth_genes.set_index("gene_id")[column]
    assert abs(weak_gap["IFI27"]) < 0.5 * abs(strong["IFI27"])


def test_final_fraction_ranges_are_checked():
    with pytest.raises(ValueError, match="responder_final_fraction must be a range"):
        CohortSpec(responder_final_fraction=(0.4, 0.2))


def test_command_line_flags_reach_the_spec(tmp_path, monkeypatch):
    seen = []

    class Written:
        def write(self, outdir, sheets_dir):
            seen.append((outdir, sheets_dir))

    def fake(spec):
        seen.append(spec)
        return Written()

    monkeypatch.setattr(simulate, "simulate_cohort", fake)
    simulate.main(
        [
            "--outdir",
            str(tmp_path),
            "--null",
            "--responder-final-fraction",
            "0.1",
            "0.2",
            "--non-responder-final-fraction",
            "0.8",
            "0.9",
            "--seed",
            "3",
        ]
    )
    spec = seen[0]
    assert spec.null and spec.seed == 3 and spec.n_drug_genes == 0
    assert spec.responder_final_fraction == (0.1, 0.2)
    assert spec.non_responder_final_fraction == (0.8, 0.9)
    assert seen[1] == (str(tmp_path), None)
    seen.clear()
    simulate.main(["--outdir", str(tmp_path), "--drug-genes", "12"])
    assert seen[0].n_drug_genes == 12 and not seen[0].null
    assert seen[0].responder_final_fraction == CohortSpec().responder_final_fraction
    assert seen[0].ifn_visit_sd == 0
    seen.clear()
    simulate.main(["--outdir", str(tmp_path), "--null", "--ifn-visit-sd", "0.15"])
    assert seen[0].null and seen[0].ifn_visit_sd == 0.15


def test_command_line_refuses_a_null_cohort_with_drug_genes(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        simulate.main(["--outdir", str(tmp_path), "--null", "--drug-genes", "5"])
    assert exit_info.value.code == 2
    assert "null cohort plants nothing over time" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_single_cells_are_written_in_blocks_with_their_totals(tmp_path):
    import anndata as ad

    from ifnsig.formats import pseudobulk

    path = tmp_path / "cells.h5ad"
    totals, nonzero = simulate.write_single_cells(
        path, n_cells=700, n_genes=60, n_samples=5, per_cell=12, seed=3, block=256
    )
    adata = ad.read_h5ad(path)
    assert adata.shape == (700, 60) and adata.X.nnz == nonzero and adata.X.has_canonical_format
    assert set(adata.obs["cell_type"]) == {"B", "Mono", "NK", "T"}
    summed = pseudobulk(path, {"single_cell": True, "sample_column": "sample"})
    assert list(summed.columns) == list(totals.index) and len(totals) == 5
    assert (summed.sum().to_numpy() == totals.to_numpy()).all()
    reference = simulate.summed_in_memory(path, {"sample_column": "sample"})
    assert summed.to_csv(sep="\t") == reference.to_csv(sep="\t")


def within_subject_covariance(cohort, gene_ids) -> np.ndarray:
    """Pooled covariance between genes of log2 library-scaled counts across each patient's
    visits (deviations from the patient's mean over visits)."""
    samples = cohort.truth_samples.set_index("sample")
    patients = cohort.samples.loc[cohort.samples["group"] == "patient", "sample"]
    scaled = cohort.counts.loc[list(gene_ids), patients] / samples.loc[patients, "library_factor"]
    values = np.log2(scaled + 0.5).T
    subjects = samples.loc[patients, "subject"].to_numpy()
    deviations = values - values.groupby(subjects).transform("mean")
    visits, n_subjects = len(values), len(set(subjects))
    return (deviations.T @ deviations).to_numpy() / (visits - n_subjects)


def test_ifn_visit_factor_moves_the_ifn_genes_together_and_plants_no_change():
    spec = dict(n_patients=60, n_controls=10, null=True, **SMALL)
    visits = simulate_cohort(CohortSpec(ifn_visit_sd=0.15, **spec))
    fixed = simulate_cohort(CohortSpec(**spec))
    truth = visits.truth_genes.set_index("gene_id")
    draws = visits.truth_samples["ifn_visit_factor"]
    assert abs(draws.std() - 0.15) < 0.02 and abs(draws.mean()) < 0.03
    # The factor's variance between visits of a patient, as drawn for this cohort.
    patients = visits.samples["group"].to_numpy() == "patient"
    factor = draws[patients].to_frame().assign(subject=visits.samples["subject"][patients])
    deviation = factor["ifn_visit_factor"] - factor.groupby("subject").transform("mean").iloc[:, 0]
    variance = (deviation**2).sum() / (len(factor) - factor["subject"].nunique())
    isgs = truth.index[truth["role"] == "isg"]
    loading = truth.loc[isgs, "ifn_loading"].to_numpy()
    off_diagonal = ~np.eye(len(isgs), dtype=bool)
    planted = (np.outer(loading, loading) * variance)[off_diagonal]
    # Between visits of a patient, two ISGs covary by the product of their loadings times
    # the factor's variance (and by nothing without the factor).
    covariance = within_subject_covariance(visits, isgs)
    observed = covariance[off_diagonal]
    assert 0.9 < observed.sum() / planted.sum() < 1.1, observed.sum() / planted.sum()
    without = within_subject_covariance(fixed, isgs)[off_diagonal]
    assert abs(without.sum() / planted.sum()) < 0.1
    strong = np.isin(isgs, truth.index[truth["ifn_loading"] >= 3])
    scale = np.sqrt(np.diag(covariance))
    correlation = covariance / np.outer(scale, scale)
    assert correlation[np.ix_(strong, strong)][off_diagonal[np.ix_(strong, strong)]].min() > 0.3
    background = truth.index[truth["role"] == "background"][:50]
    unrelated = within_subject_covariance(visits, background)[~np.eye(len(background), dtype=bool)]
    assert abs(unrelated.mean()) < 0.005
    # Still a null cohort: no mean change over time, in the truth or in the counts.
    subjects = visits.truth_subjects.query("group == 'patient'")["subject"]
    change = paired_change(visits, isgs[strong], subjects)
    assert abs(change.mean()) < 0.25 and stats.wilcoxon(change).pvalue > 0.05
    assert not truth["planted_de"].any() and (truth.filter(like="lfc").to_numpy() == 0).all()
    pd.testing.assert_frame_equal(visits.truth_genes, fixed.truth_genes)
    # Only the IFN-driven genes' counts differ from the cohort without the factor.
    moved = truth.index[truth["ifn_loading"] != 0]
    assert set(moved) == set(truth.index[truth["role"].isin(["isg", "ifng"])])
    others = truth.index.difference(moved)
    pd.testing.assert_frame_equal(visits.counts.loc[others], fixed.counts.loc[others])
    pd.testing.assert_frame_equal(visits.clinical, fixed.clinical)
    pd.testing.assert_frame_equal(
        visits.truth_samples.drop(columns="ifn_visit_factor"), fixed.truth_samples
    )
    assert "ifn_visit_factor" not in fixed.truth_samples
    with pytest.raises(ValueError, match="ifn_visit_sd must be 0 or more"):
        CohortSpec(ifn_visit_sd=-0.1)
