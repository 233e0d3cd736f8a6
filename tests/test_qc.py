"""Quality control: planted failures are flagged, clean samples are not, real pairs pair up."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_stage, shared_data

from ifnsig import data, qc
from ifnsig.errors import InputError
from ifnsig.settings import is_blood, marker_file
from ifnsig.simulate import CELL_MARKERS, CohortSpec, simulate_cohort
from ifnsig.validation import validate_config

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("qc")

TIMEPOINTS = ["baseline", "month3", "month6"]
# A demo-shaped cohort (25 patients x 3 timepoints, 12 controls) with every QC failure the
# simulator can plant, and a composition shift on treatment; fewer genes for speed (the named
# blood genes are all kept).
PLANTED = dict(
    n_genes=2500,
    n_treatment_genes=100,
    plant_sex_flip=True,
    plant_swap=True,
    plant_globin=True,
    composition_shift={"neutrophil": 1.0, "t_cell": -0.8},
)


def normalized_cohort(cohort, timepoints=TIMEPOINTS):
    """Raw-count and normalized AnnData of a simulated cohort, as the workflow builds them."""
    samples = cohort.samples.set_index("sample", drop=False).rename_axis(None)
    raw = data.build_anndata(cohort.counts, samples, timepoints=timepoints)
    normalized = data.filter_genes(raw, 10, 3)
    data.normalize(normalized)
    return raw, normalized


def run(raw, normalized, settings=None, timepoints=TIMEPOINTS):
    samples = normalized.obs.assign(sample=normalized.obs_names)
    return qc.run_qc(
        raw.X,
        raw.var["symbol"],
        normalized.layers["vst"],
        normalized.var["symbol"],
        samples,
        normalized.obs["size_factor"].to_numpy(),
        qc.read_markers(qc.SHIPPED_MARKERS),
        settings or qc.QCSettings(),
        timepoints=timepoints,
        patient_group="patient",
        seed=1,
    )


@pytest.fixture(scope="module", params=[20200101, 7], ids=["seed20200101", "seed7"])
def planted(request):
    cohort = simulate_cohort(CohortSpec(**PLANTED, seed=request.param))
    raw, normalized = normalized_cohort(cohort)
    return cohort, raw, normalized, run(raw, normalized)


def test_each_planted_problem_is_flagged_and_nothing_clean(planted):
    cohort, _, _, result = planted
    truth = cohort.truth_samples.set_index("sample")["planted"]
    flags = result.flags
    assert set(flags["sample"]) == set(truth[truth != ""].index)

    flipped = truth.index[truth == "sex_flip"]
    assert len(flipped) == 3
    for sample in flipped:
        assert "sex_mismatch" in set(flags.loc[flags["sample"] == sample, "flag"])

    swapped = truth.index[truth == "swap"]
    subject_of = cohort.samples.set_index("sample")["subject"]
    first, second = swapped
    true_subject = {first: subject_of[second], second: subject_of[first]}
    for sample in swapped:
        mismatch = flags[(flags["sample"] == sample) & (flags["flag"] == "pairing_mismatch")]
        assert len(mismatch) == 1
        # The library carries the other child's RNA: the check names that child.
        assert mismatch["matched_subject"].iat[0] == true_subject[sample]

    (globin,) = truth.index[truth == "globin"]
    assert "pct_globin_high" in set(flags.loc[flags["sample"] == globin, "flag"])
    row = result.samples.set_index("sample").loc[globin]
    assert row["pct_globin"] > 5 * result.samples["pct_globin"].median()


def test_planted_composition_shift_is_found_and_others_stay_flat(planted):
    changes = planted[3].composition_changes.set_index(["cell_type", "timepoint"])
    neutrophil = changes.loc[("neutrophil", "month6")]
    t_cell = changes.loc[("t_cell", "month6")]
    assert neutrophil["median_change"] > 0.5 and neutrophil["fdr"] < 0.01
    assert t_cell["median_change"] < -0.4 and t_cell["fdr"] < 0.01
    for cell in ["monocyte", "b_cell", "nk_cell"]:
        assert changes.loc[(cell, "month6"), "fdr"] > 0.05, cell


def test_composition_scores_follow_the_planted_markers():
    cohort = simulate_cohort(CohortSpec(n_patients=6, n_controls=3, n_genes=800, seed=3))
    _, normalized = normalized_cohort(cohort)
    markers = {"neutrophil": CELL_MARKERS["neutrophil"], "absent": ["NOT_A_GENE"]}
    scores, coverage = qc.composition_scores(
        normalized.layers["vst"], normalized.var["symbol"], markers
    )
    assert list(scores.columns) == ["neutrophil_score"]
    assert np.isclose(scores["neutrophil_score"].mean(), 0)
    vst = pd.DataFrame(normalized.layers["vst"], columns=normalized.var["symbol"])
    expected = (vst[CELL_MARKERS["neutrophil"]] - vst[CELL_MARKERS["neutrophil"]].mean()).mean(1)
    np.testing.assert_allclose(scores["neutrophil_score"], expected)
    assert coverage.set_index("cell_type").loc["absent", "n_found"] == 0


def test_stage_writes_tables_h5ad_plots_and_multiqc_files(tmp_path, drawn):
    spec = CohortSpec(n_patients=8, n_controls=4, n_genes=1200, n_treatment_genes=50, seed=5)
    cohort = simulate_cohort(spec)
    raw, normalized = normalized_cohort(cohort)
    raw.write_h5ad(tmp_path / "counts.h5ad")
    normalized.write_h5ad(tmp_path / "cohort.h5ad")
    config = {
        "counts": "x",
        "samples": "x",
        "timepoints": TIMEPOINTS,
        "clinical": None,
        "qc": {"thresholds": {"max_pct_mito": 1.0}},
    }
    validate_config(config)
    names = {
        "metrics": "qc_metrics.tsv",
        "flags": "qc_flags.tsv",
        "composition": "composition.tsv",
        "composition_changes": "composition_changes.tsv",
        "composition_markers": "composition_markers.tsv",
        "h5ad": "qc.h5ad",
        "multiqc_metrics": "qc_metrics_mqc.tsv",
        "multiqc_flags": "qc_flags_mqc.yaml",
        "multiqc_identity": "qc_identity_mqc.tsv",
        "multiqc_composition": "qc_composition_mqc.tsv",
        "pca": "pca.png",
        "correlation": "correlation.png",
        "metric_bars": "metrics.png",
        "sex": "sex.png",
        "composition_plot": "composition.png",
    }
    outputs = {key: str(tmp_path / name) for key, name in names.items()}
    inputs = {
        "counts": str(tmp_path / "counts.h5ad"),
        "normalized": str(tmp_path / "cohort.h5ad"),
        "markers": marker_file(config),
    }
    run_stage("quality_control", config, inputs, outputs)
    for path in outputs.values():
        assert (tmp_path / path).stat().st_size > 0, path

    flags = pd.read_csv(outputs["flags"], sep="\t", keep_default_na=False)
    assert list(flags.columns) == qc.FLAG_COLUMNS
    # A fixed bound below every library's mitochondrial share flags them all, and says so.
    mito = flags[flags["flag"] == "pct_mito_high"]
    assert len(mito) == len(cohort.samples)
    assert (mito["rule"] == "qc.thresholds.max_pct_mito").all()

    composition = pd.read_csv(outputs["composition"], sep="\t")
    assert list(composition["sample"]) == list(normalized.obs_names)
    assert "neutrophil_score" in composition.columns

    import anndata as ad

    summary = ad.read_h5ad(outputs["h5ad"])
    assert summary.n_vars > 0 and summary.obsm["X_pca"].shape[0] == summary.n_obs
    assert summary.X.shape == (summary.n_obs, summary.n_vars) and "gene_id" in summary.var
    assert {"qc_sex", "qc_pairing", "neutrophil_score", "pct_globin"} <= set(summary.obs.columns)

    # MultiQC custom content: YAML configuration in '#' lines, then a table keyed by sample.
    text = open(outputs["multiqc_metrics"]).read().splitlines()
    header = yaml.safe_load("\n".join(line[2:] for line in text if line.startswith("# ")))
    assert header["plot_type"] == "generalstats" and header["id"] == "ifnsig_qc"
    body = pd.read_csv(outputs["multiqc_metrics"], sep="\t", comment="#")
    assert body.columns[0] == "Sample" and len(body) == len(cohort.samples)
    assert body["library_size"].dtype.kind == "i"
    document = yaml.safe_load(open(outputs["multiqc_flags"]))
    assert document["plot_type"] == "table"
    assert set(document["data"]) == set(flags["sample"])
    identity = pd.read_csv(outputs["multiqc_identity"], sep="\t", comment="#")
    assert {"declared_sex", "predicted_sex", "own_r", "best_other_subject"} <= set(identity)
    composition = pd.read_csv(outputs["multiqc_composition"], sep="\t", comment="#")
    assert "neutrophil_score" in composition.columns and len(composition) == len(cohort.samples)

    # Plots: legends readable at report width, every text inside the figure.
    for name in ["pca.png", "correlation.png", "metrics.png", "sex.png", "composition.png"]:
        assert not drawn[name]["outside"], (name, drawn[name]["outside"])
    assert min(drawn["pca.png"]["legend_sizes"]) >= 8
    assert "group:" in drawn["correlation.png"]["legends"][0]

    # Another tissue: no globin share, no blood composition, no marker table read; the
    # other checks still run and every output is written.
    config["tissue"] = "muscle"
    assert marker_file(config) is None
    inputs.pop("markers")
    other = {key: str(tmp_path / f"muscle_{name}") for key, name in names.items()}
    run_stage("quality_control", config, inputs, other)
    for path in other.values():
        assert (tmp_path / path).stat().st_size > 0, path
    metrics = pd.read_csv(other["metrics"], sep="\t")
    assert metrics["pct_globin"].isna().all() and metrics["pct_mito"].notna().all()
    assert list(pd.read_csv(other["composition"], sep="\t").columns) == ["sample"]
    flags = pd.read_csv(other["flags"], sep="\t", keep_default_na=False)
    assert not flags["flag"].str.contains("globin").any()


# --- unit tests on tiny data -------------------------------------------------------------------


def test_gene_classes_pick_mito_globin_and_ribosomal_protein_genes():
    symbols = ["MT-CO1", "HBB", "HBA2", "RPL13A", "RPS4X", "RPLP0", "RPSA", "RPS6KA1", "GAPDH"]
    classes = qc.gene_classes(symbols)
    assert list(classes["mito"]) == [True] + [False] * 8
    assert list(classes["globin"]) == [False, True, True] + [False] * 6
    assert list(classes["ribo"]) == [False] * 3 + [True] * 4 + [False, False]


def test_sample_metrics_match_direct_computation():
    rng = np.random.default_rng(0)
    counts = rng.poisson(5, (4, 80))
    counts[0, :3] = 0
    symbols = ["MT-ND1", "HBB", "RPL3"] + [f"G{i}" for i in range(77)]
    table = qc.sample_metrics(counts, symbols, pd.Index(list("abcd")), np.ones(4))
    total = counts.sum(1)
    np.testing.assert_array_equal(table["library_size"], total)
    np.testing.assert_array_equal(table["detected_genes"], (counts > 0).sum(1))
    top = -np.sort(-counts, axis=1)[:, :50].sum(1)
    np.testing.assert_allclose(table["pct_top50"], 100 * top / total)
    np.testing.assert_allclose(table["pct_globin"], 100 * counts[:, 1] / total)


def test_metric_bounds_are_robust_and_fixed_thresholds_are_added():
    metrics = pd.DataFrame(
        {
            "sample": [f"s{i}" for i in range(11)],
            "library_size": [1e6] * 5 + [1.1e6] * 5 + [1e4],
            "detected_genes": [15000] * 11,
            "pct_top50": [30.0 + i % 3 for i in range(11)],
            "pct_mito": [5.0 + (i % 4) / 2 for i in range(11)],
            "pct_globin": [2.0 + (i % 2) for i in range(10)] + [60.0],
            "pct_ribo": [20.0 + (i % 5) for i in range(11)],
            "size_factor": [1.0 + (i % 3) / 10 for i in range(11)],
        }
    )
    bounds = qc.metric_bounds(metrics, 5, {"max_pct_mito": 6.0, "min_library_size": None})
    subjects = pd.Series(metrics["sample"].to_numpy(), index=metrics["sample"])
    flags = qc.metric_flags(metrics, bounds, subjects)
    flagged = set(zip(flags["sample"], flags["flag"], strict=True))
    assert ("s10", "library_size_low") in flagged
    assert ("s10", "pct_globin_high") in flagged
    # No spread in detected genes: the MAD floor (1% of the median) puts the bound 5% below.
    detected = bounds.set_index("metric").loc["detected_genes", "bound"]
    assert np.isclose(detected, 15000 * np.exp(-0.05))
    assert not flags["flag"].str.startswith("detected_genes").any()
    mito = flags[flags["flag"] == "pct_mito_high"]
    assert set(mito["sample"]) == set(metrics.loc[metrics["pct_mito"] > 6, "sample"])
    assert (mito["rule"] == "qc.thresholds.max_pct_mito").all()


def sex_inputs(declared):
    samples = pd.DataFrame(
        {"sample": ["a", "b", "c", "d"], "subject": ["A", "B", "C", "D"], "sex": declared}
    )
    # a, b: female; c: male; d: both XIST and the Y genes, as XXY or a mixture of two people.
    expression = pd.DataFrame(
        {
            "XIST": [9.0, 9.5, 0.2, 8.5],
            "RPS4Y1": [0.0, 0.1, 8.0, 7.5],
            "DDX3Y": [0.0, 0.0, 6.0, 6.5],
        }
    )
    return expression, samples


def test_sex_check_flags_declared_mismatch_and_unclear_samples():
    expression, samples = sex_inputs(["female", "male", "male", "female"])
    table, flags = qc.sex_check(expression, samples, min_gap=2, min_log2=4)
    assert list(table["predicted_sex"]) == ["female", "female", "male", "unclear"]
    assert dict(zip(flags["sample"], flags["flag"], strict=True)) == {
        "b": "sex_mismatch",
        "d": "sex_unclear",
    }
    assert "declared male" in flags.set_index("sample").loc["b", "evidence"]


def test_sex_check_in_one_sex_cohorts_and_without_expressed_sex_genes():
    expression, samples = sex_inputs(["female"] * 4)
    female = expression.iloc[[0, 1, 0, 1]].reset_index(drop=True)
    table, flags = qc.sex_check(female, samples, min_gap=2, min_log2=4)
    assert flags.empty and list(table["predicted_sex"]) == ["female"] * 4
    table, flags = qc.sex_check(expression * 0, samples, min_gap=2, min_log2=4)
    assert flags.empty and (table["predicted_sex"] == "").all()


def test_trait_calls_need_a_clear_gap_and_enough_expression():
    expression = pd.DataFrame(
        {
            "GSTM1": [0.0, 0.3, 7.5, 8.0, 7.8, 0.1],  # bimodal and well expressed
            "GSTT1": [0.0, 0.8, 1.6, 2.5, 3.1, 2.0],  # no gap
            "ERAP2": [0.0, 0.0, 3.0, 3.2, 3.1, 0.0],  # gap, but too few reads
        }
    )
    calls, info = qc.trait_calls(expression, min_gap=2, min_log2=4)
    assert list(calls.columns) == ["GSTM1"]
    assert list(calls["GSTM1"]) == [False, False, True, True, True, False]
    assert info.set_index("gene")["informative"].to_dict() == {
        "GSTM1": True,
        "GSTT1": False,
        "ERAP2": False,
    }


def test_trait_discordance_flags_the_odd_sample_or_both_of_a_pair():
    samples = pd.DataFrame(
        {"sample": ["a1", "a2", "a3", "b1", "b2"], "subject": ["A", "A", "A", "B", "B"]}
    )
    traits = pd.DataFrame(
        {"GSTM1": ["True", "True", "False", "True", "True"], "sex": ["female"] * 3 + ["male", ""]}
    )
    flags = qc.trait_discordance(traits, samples)
    assert list(flags["sample"]) == ["a3"]
    assert "GSTM1 absent here but expressed in a1, a2" in flags["evidence"].iat[0]
    traits.loc[4, "sex"] = "female"
    flags = qc.trait_discordance(traits, samples)
    assert set(flags["sample"]) == {"a3", "b1", "b2"}


def test_pairing_names_the_subject_a_swapped_sample_belongs_to():
    # Three people, each with a stable expression profile; the label of y2 is swapped to X.
    rng = np.random.default_rng(1)
    people = {p: rng.normal(0, 1, 400) for p in "XYZ"}
    libraries = ["X", "X", "Y", "Y", "Y", "Z", "Z"]
    labels = ["X", "X", "Y", "X", "Y", "Z", "Z"]
    vst = np.array([people[p] + rng.normal(0, 1, 400) for p in libraries])
    samples = pd.DataFrame(
        {
            "sample": ["x1", "x2", "y1", "y2", "y3", "z1", "z2"],
            "subject": labels,
            "group": "patient",
            "timepoint": ["t1", "t2", "t1", "t3", "t2", "t1", "t2"],
        }
    )
    table, flags = qc.pairing_check(qc.person_profiles(vst, samples), samples)
    flagged = flags.set_index("sample")
    assert list(flagged.index) == ["y2"]
    assert flagged.loc["y2", "matched_subject"] == "Y"
    assert flagged.loc["y2", "flag"] == "pairing_mismatch"


def test_pca_outlier_check_keeps_two_groups_and_flags_the_odd_sample():
    rng = np.random.default_rng(2)
    groups = np.r_[np.zeros(30), np.ones(30) * 6]
    scores = np.column_stack([groups + rng.normal(0, 1, 60), rng.normal(0, 1, (60, 2))])
    scores[5, 2] = 12.0
    samples = pd.DataFrame({"sample": [f"s{i}" for i in range(60)], "subject": "x"})
    table, flags = qc.pca_outliers(scores, samples, n_pcs=3, support=0.9, alpha=1e-6, seed=0)
    assert list(flags["sample"]) == ["s5"]
    assert table["pca_distance2"].iat[5] > table["pca_cutoff"].iat[5]


def test_correlation_outlier_is_the_sample_unlike_all_others():
    rng = np.random.default_rng(3)
    base = rng.normal(8, 2, 500)
    vst = base + rng.normal(0, 0.3, (20, 500))
    vst[7] = base + rng.normal(0, 2.0, 500)
    samples = pd.DataFrame({"sample": [f"s{i}" for i in range(20)], "subject": "x"})
    table, flags = qc.correlation_outliers(qc.unit_rows(vst), samples, nmads=5)
    assert list(flags["sample"]) == ["s7"]


def paired_cohort(n_subjects: int = 30, n_genes: int = 300, seed: int = 4):
    """Subjects with three samples each; two labels swapped, one library degraded."""
    rng = np.random.default_rng(seed)
    people = rng.normal(0, 1, (n_subjects, n_genes))
    subject = np.repeat(np.arange(n_subjects), 3)
    base = rng.normal(8, 2, n_genes)
    vst = base + people[subject] + rng.normal(0, 1, (len(subject), n_genes))
    vst[10] = rng.normal(8, 2, n_genes)
    labels = subject.copy()
    labels[[4, 40]] = labels[[40, 4]]
    samples = pd.DataFrame(
        {
            "sample": [f"s{i}" for i in range(len(subject))],
            "subject": [f"P{k}" for k in labels],
            "group": "patient",
            "timepoint": np.tile(["t1", "t2", "t3"], n_subjects),
        }
    )
    return vst, samples


def full_matrix_checks(vst, samples, nmads):
    """The pairing and correlation checks as computed on whole sample x sample matrices."""

    def whole(unit):
        return np.clip(unit @ unit.T, -1.0, 1.0)

    r = whole(qc.person_profiles(vst, samples))
    subjects = samples["subject"].astype(str).to_numpy()
    np.fill_diagonal(r, -np.inf)
    same = subjects[:, None] == subjects[None, :]
    own, other = np.where(same, r, -np.inf), np.where(~same, r, -np.inf)
    n = len(r)
    best = {
        "own_r": own[np.arange(n), own.argmax(axis=1)],
        "best_other_r": other[np.arange(n), other.argmax(axis=1)],
        "best_other_sample": samples["sample"].to_numpy()[other.argmax(axis=1)],
    }
    r = whole(qc.unit_rows(vst))
    np.fill_diagonal(r, np.nan)
    return best, np.nanmedian(r, axis=1)


@pytest.mark.parametrize("block", [None, 7])
def test_correlation_checks_in_blocks_equal_the_whole_matrix(monkeypatch, block):
    vst, samples = paired_cohort()
    expected, median_r = full_matrix_checks(vst, samples, nmads=5)
    if block:
        monkeypatch.setattr(qc, "CORRELATION_BLOCK", block)
    pairing, pairing_flags = qc.pairing_check(qc.person_profiles(vst, samples), samples)
    outliers, outlier_flags = qc.correlation_outliers(qc.unit_rows(vst), samples, nmads=5)
    # One block (every cohort up to CORRELATION_BLOCK samples): the same bits as before.
    compare = np.testing.assert_array_equal if block is None else np.testing.assert_allclose
    for column in ["own_r", "best_other_r"]:
        compare(pairing[column].to_numpy(), expected[column])
    compare(outliers["median_r"].to_numpy(), median_r)
    assert list(pairing["best_other_sample"]) == list(expected["best_other_sample"])
    assert set(pairing_flags["sample"]) >= {"s4", "s40"}
    assert list(outlier_flags["sample"]) == ["s10"]


def test_person_profiles_and_pca_genes_hold_no_extra_copy_and_give_the_same_bits():
    vst, samples = paired_cohort()
    # As computed before with a copy of the VST matrix at each step.
    residual = np.asarray(vst, dtype=float).copy()
    cells = samples["group"].astype(str) + "\t" + samples["timepoint"].astype(str)
    overall = residual.mean(axis=0)
    for cell in pd.unique(cells):
        rows = np.flatnonzero((cells == cell).to_numpy())
        residual[rows] -= residual[rows].mean(axis=0) if len(rows) > 1 else overall
    np.testing.assert_array_equal(
        qc.person_profiles(vst, samples), qc.unit_rows(residual, standardize_columns=True)
    )
    before = vst.copy()
    assert qc.person_profiles(vst, samples) is not vst
    np.testing.assert_array_equal(vst, before)  # the caller's matrix is left as it was
    own = np.array(vst, dtype=float)
    assert qc.unit_rows(own, copy=False) is own
    symbols = np.array([f"G{i}" for i in range(vst.shape[1])])
    symbols[:2] = ["XIST", "RPS4Y1"]
    kept = vst[:, np.arange(2, vst.shape[1])]  # a copy of the kept genes, as before
    top = np.argsort(kept.var(axis=0))[::-1][:15]
    _, _, genes = qc.pca_scores(vst, symbols, n_top=15, seed=1)
    np.testing.assert_array_equal(genes, 2 + top)


def test_heatmap_shows_every_sample_up_to_its_limit_then_the_flagged_and_a_draw(monkeypatch):
    names = pd.Series([f"s{i}" for i in range(40)])
    np.testing.assert_array_equal(qc.heatmap_rows(names, {"s3"}, seed=1), np.arange(40))
    monkeypatch.setattr(qc, "HEATMAP_SAMPLES", 10)
    rows = qc.heatmap_rows(names, {"s3", "s39"}, seed=1)
    assert len(rows) == 10 and {3, 39} <= set(rows) and list(rows) == sorted(rows)
    np.testing.assert_array_equal(rows, qc.heatmap_rows(names, {"s3", "s39"}, seed=1))


def test_marker_table_errors_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "markers.tsv"
    path.write_text("celltype\tsymbol\nT\tCD3E\n")
    with pytest.raises(InputError, match="markers.tsv: column.*cell_type"):
        qc.read_markers(path)
    path.write_text("cell_type\tsymbol\nT cells\tCD3E\n")
    with pytest.raises(InputError, match="line 2: cell_type 'T cells'"):
        qc.read_markers(path)


def test_shipped_markers_agree_with_the_cited_li_modules():
    btm = pytest.importorskip("BTM.btm2013")
    table = pd.read_csv(qc.SHIPPED_MARKERS, sep="\t")
    renamed = {"JCHAIN": "IGJ"}
    checked = 0
    for row in table.itertuples():
        for module in re.findall(r"Li 2014 (M[\d.]+)", row.source):
            (key,) = [k for k in btm.ModuleDict if k.endswith(f"({module})")]
            assert renamed.get(row.symbol, row.symbol) in btm.ModuleDict[key], (row.symbol, key)
            checked += 1
    assert checked > 40
    markers = qc.read_markers(qc.SHIPPED_MARKERS)
    assert set(markers) >= {"neutrophil", "monocyte", "t_cell", "b_cell", "nk_cell"}
    assert set(markers) >= {"plasmablast", "platelet", "erythroid"}


# --- real data --------------------------------------------------------------------------------


AIRWAY_GENES = 3000


def test_airway_cell_lines_pair_with_themselves():
    """Himes 2014: four airway smooth-muscle lines, each untreated and dexamethasone-treated."""
    folder = shared_data("airway")
    counts = pd.read_csv(folder / "airway_counts.csv.gz", index_col=0)
    coldata = pd.read_csv(folder / "airway_coldata.csv", index_col=0)
    timepoint = np.where(coldata["dex"] == "untrt", "untreated", "dex")
    samples = pd.DataFrame(
        {
            "sample": coldata.index,
            "subject": coldata["cell"],
            "group": "patient",
            "timepoint": timepoint,
        },
        index=coldata.index,
    )
    raw = data.build_anndata(counts, samples, timepoints=["untreated", "dex"])
    normalized = data.filter_genes(raw, 10, 3)
    # A seeded 3,000 of the 16,596 expressed genes: the VST's dispersion fit (most of this
    # test's time) grows with the genes, and the pairing needs far fewer to tell the lines apart.
    drawn = np.random.default_rng(0).choice(normalized.n_vars, AIRWAY_GENES, replace=False)
    normalized = normalized[:, np.sort(drawn)].copy()
    data.normalize(normalized)
    result = run(raw, normalized, timepoints=["untreated", "dex"])
    table = result.samples.set_index("sample")
    cell = coldata["cell"]
    for sample in coldata.index[coldata["dex"] == "trt"]:
        untreated = coldata.index[(coldata["cell"] == cell[sample]) & (coldata["dex"] == "untrt")]
        # Ensembl IDs only: no sex or trait genes, the pairing rests on the data alone.
        assert table.loc[sample, "own_best_sample"] == untreated[0]
        assert table.loc[sample, "own_r"] > table.loc[sample, "best_other_r"] + 0.2
    assert result.flags[result.flags["check"] == "pairing"].empty


def multiqc(folder: Path, out: Path) -> tuple[subprocess.CompletedProcess, str]:
    """MultiQC on ``folder`` in a fresh process; its run and its log file."""
    command = [
        sys.executable, "-m", "multiqc", str(folder), "-o", str(out), "--no-ansi",
        "--no-version-check", "--strict", "-f",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    log = out / "multiqc_data" / "multiqc.log"
    return run, log.read_text() if log.exists() else ""


@pytest.mark.e2e
def test_multiqc_renders_the_qc_folder_without_warnings(small_run, tmp_path):
    pytest.importorskip("multiqc")
    folder = tmp_path / "qc"
    shutil.copytree(small_run / "results" / "qc", folder)
    flags = pd.read_csv(folder / "qc_flags.tsv", sep="\t", keep_default_na=False)
    metrics = pd.read_csv(folder / "qc_metrics.tsv", sep="\t")
    runs = {"as run": None, "no sample flagged": flags.iloc[:0]}
    for case, rewritten in runs.items():
        if rewritten is not None:
            document = qc.multiqc_flags(rewritten, len(metrics))
            (folder / "qc_flags_mqc.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        out = tmp_path / case.replace(" ", "_")
        run, log = multiqc(folder, out)
        assert run.returncode == 0, (case, run.stderr[-2000:])
        warnings = [line for line in log.splitlines() if "[WARNING" in line or "[ERROR" in line]
        assert not warnings, (case, warnings)
        assert "No data found" not in run.stdout + run.stderr, case
        html = (out / "multiqc_report.html").read_text()
        for section in ["ifnsig_qc_flags", "ifnsig_identity", "ifnsig_composition"]:
            assert section in html, (case, section)
    # Library sizes reach MultiQC whole, never rounded to six digits.
    body = pd.read_csv(folder / "qc_metrics_mqc.tsv", sep="\t", comment="#")
    assert body["library_size"].tolist() == metrics["library_size"].round().astype(int).tolist()
    assert "No sample was flagged" in html


def test_read_layers_gives_the_named_layers_as_read_h5ad_does(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(1)
    cohort = ad.AnnData(
        X=rng.normal(size=(6, 4)).astype(np.float32),
        obs=pd.DataFrame({"subject": list("aabbcc")}, index=[f"s{i}" for i in range(6)]),
        var=pd.DataFrame({"symbol": list("WXYZ")}, index=[f"g{i}" for i in range(4)]),
        uns={"vst_fit_type": "parametric"},
    )
    for layer in ("counts", "normalized", "vst"):
        cohort.layers[layer] = rng.normal(size=(6, 4))
    data.write_h5ad(cohort, tmp_path / "c.h5ad")
    whole = ad.read_h5ad(tmp_path / "c.h5ad")
    part = data.read_layers(tmp_path / "c.h5ad", ["vst"])
    assert list(part.layers) == ["vst"] and part.X is None
    np.testing.assert_array_equal(part.layers["vst"], whole.layers["vst"])
    pd.testing.assert_frame_equal(part.obs, whole.obs)
    pd.testing.assert_frame_equal(part.var, whole.var)
    assert part.uns["vst_fit_type"] == "parametric"
    pd.testing.assert_frame_equal(data.layer_table(part, "vst"), data.layer_table(whole, "vst"))


@pytest.mark.parametrize("block", [data.LAYER_BLOCK_VALUES, 12])
def test_layer_tsv_in_blocks_is_pandas_to_csv_of_the_layer_table(tmp_path, monkeypatch, block):
    import anndata as ad

    monkeypatch.setattr(data, "LAYER_BLOCK_VALUES", block)  # 12: 2 genes a block
    rng = np.random.default_rng(2)
    values = np.exp(rng.normal(scale=8, size=(6, 7)))
    values[0, 0], values[1, 1], values[2, 2] = 0.0, 1e-300, -0.0
    values[3, 5] = np.nan  # a block pandas writes (empty cell)
    symbols = ["A", 'quoted "B"', "C\tD", "E", "F", "G", "H"]
    cohort = ad.AnnData(
        X=np.zeros((6, 7), dtype=np.float32),
        obs=pd.DataFrame(index=[f"s{i}" for i in range(6)]),
        var=pd.DataFrame({"symbol": symbols}, index=[f"g{i}" for i in range(7)]),
    )
    cohort.layers["vst"] = values
    cohort.layers["normalized"] = values.astype(np.float32)
    data.write_h5ad(cohort, tmp_path / "c.h5ad")
    for layer in ("vst", "normalized"):
        data.write_layer_tsv(tmp_path / "c.h5ad", layer, tmp_path / f"{layer}.tsv")
        expected = data.layer_table(ad.read_h5ad(tmp_path / "c.h5ad"), layer).to_csv(
            sep="\t", index=False, float_format="%.10g"
        )
        assert (tmp_path / f"{layer}.tsv").read_text() == expected


@pytest.mark.parametrize(
    "tissue, blood",
    [
        ("blood", True),
        ("Blood", True),
        ("whole blood", True),
        ("Whole_Blood", True),
        ("peripheral-blood", True),
        ("PBMC", False),
        ("muscle", False),
        ("bloodless", False),
    ],
)
def test_blood_is_recognised_by_its_usual_names(tissue, blood):
    assert is_blood({"tissue": tissue}) is blood
    assert (marker_file({"tissue": tissue, "qc": {"markers": None}}) is None) is not blood
