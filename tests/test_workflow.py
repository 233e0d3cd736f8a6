"""End to end: the real snakemake on a small cohort from the demo simulator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import snakemake, write_project
from scipy import stats

from ifnsig.simulate import CohortSpec

# The workflow runs share the session's small run: one pytest-xdist worker takes them all.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("workflow")]


SPEC = CohortSpec(n_patients=20, n_controls=8, n_genes=3000, n_treatment_genes=300, seed=7)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    write_project(folder, SPEC)
    run = snakemake(folder)
    assert run.returncode == 0, run.stderr[-4000:]
    return folder


def read(folder, path):
    return pd.read_csv(folder / path, sep="\t")


def test_every_output_exists_and_rerun_has_nothing_to_do(demo_run):
    expected = [
        "results/data/cohort.h5ad",
        "results/scores/ifn_scores.tsv",
        "results/scores/geneset_coverage.tsv",
        "results/de/month3_vs_baseline.tsv",
        "results/de/month6_vs_baseline.tsv",
        "results/enrichment/month6_vs_baseline.prerank.tsv",
        "results/enrichment/month6_vs_baseline.ora.tsv",
        "results/clinical/paired_tests.tsv",
        "results/clinical/correlations.tsv",
        "results/clinical/changes.tsv",
        "results/plots/qc/pca.png",
        "results/qc/qc_flags.tsv",
        "results/plots/de/month6_vs_baseline.volcano.png",
        "results/plots/de/month6_vs_baseline.heatmap.png",
        "results/plots/enrichment/month6_vs_baseline.ifn_running_scores.png",
        "results/de/vst.tsv",
        "results/plots/clinical/change_vs_change.png",
    ]
    for path in expected:
        assert (demo_run / path).stat().st_size > 0, path
    dry = snakemake(demo_run, "-n")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_baseline_positivity_agrees_with_planted_truth(demo_run):
    scores = read(demo_run, "results/scores/ifn_scores.tsv")
    truth = read(demo_run, "inputs/truth_subjects.tsv")
    base = scores[
        (scores["signature"] == "RICE2013_6")
        & (scores["method"] == "median_fold_change")
        & (scores["group"] == "patient")
        & (scores["timepoint"] == "baseline")
    ]
    merged = base.merge(truth[["subject", "ifn_high"]], on="subject")
    assert (merged["positive"] == merged["ifn_high"]).mean() >= 0.9


def test_score_falls_at_followup(demo_run):
    paired = read(demo_run, "results/clinical/paired_tests.tsv")
    primary = paired[
        (paired["signature"] == "RICE2013_6") & (paired["method"] == "median_fold_change")
    ]
    assert (primary["pvalue"] < 0.05).all() and (primary["estimate"] < 0).all()


def test_planted_de_genes_found_at_low_observed_fdr(demo_run):
    truth = read(demo_run, "inputs/truth_genes.tsv")
    table = read(demo_run, "results/de/month6_vs_baseline.tsv").merge(truth, on="gene_id")
    called = table["padj"] < 0.05
    false = called & ~table["planted_de"]
    assert called.sum() > 0.5 * table["planted_de"].sum()
    assert false.sum() / called.sum() <= 0.10


def test_score_change_tracks_cmas_change_with_planted_sign(demo_run):
    corr = read(demo_run, "results/clinical/correlations.tsv")
    row = corr[
        (corr["signature"] == "RICE2013_6")
        & (corr["method"] == "median_fold_change")
        & (corr["timepoint"] == "month6")
        & (corr["measure"] == "CMAS")
    ].iloc[0]
    assert row["estimate"] < 0 and row["pvalue"] < 0.05
    # The same association recomputed from the written change tables.
    changes = read(demo_run, "results/clinical/score_changes.tsv")
    clin = read(demo_run, "results/clinical/changes.tsv")
    s = changes[
        (changes["signature"] == "RICE2013_6")
        & (changes["method"] == "median_fold_change")
        & (changes["timepoint"] == "month6")
    ]
    c = clin[(clin["measure"] == "CMAS") & (clin["timepoint"] == "month6")]
    merged = s.merge(c, on="subject")
    rho = stats.spearmanr(merged["change_x"], merged["change_y"])[0]
    assert np.isclose(rho, row["estimate"])


def test_shipped_ifn_sets_are_enriched_in_planted_direction(demo_run):
    prerank = read(demo_run, "results/enrichment/month6_vs_baseline.prerank.tsv")
    rows = prerank.set_index("gene_set").loc[["RICE2013_6", "NIH28"]]
    assert (rows["nes"] < 0).all() and (rows["fdr"] < 0.05).all()


def test_qc_flags_nothing_in_a_clean_cohort_and_reports_every_sample(demo_run):
    flags = read(demo_run, "results/qc/qc_flags.tsv")
    assert flags.empty, flags[["sample", "flag", "evidence"]].to_string()
    metrics = read(demo_run, "results/qc/qc_metrics.tsv")
    samples = read(demo_run, "inputs/samples.tsv")
    assert sorted(metrics["sample"]) == sorted(samples["sample"])
    truth = read(demo_run, "inputs/truth_subjects.tsv").set_index("subject")["sex"]
    assert (metrics["predicted_sex"] == metrics["subject"].map(truth)).all()
    composition = read(demo_run, "results/qc/composition.tsv")
    assert {"neutrophil_score", "t_cell_score"} <= set(composition.columns)


def test_malformed_sheet_fails_before_any_job(tmp_path):
    write_project(
        tmp_path, CohortSpec(n_patients=3, n_controls=2, n_genes=500, n_treatment_genes=10)
    )
    sheet = tmp_path / "inputs" / "samples.tsv"
    lines = sheet.read_text().splitlines()
    lines.append(lines[1])  # a duplicated sample
    sheet.write_text("\n".join(lines) + "\n")
    run = snakemake(tmp_path)
    assert run.returncode != 0
    assert "appears on lines" in run.stderr
    assert not (tmp_path / "results").exists()


def test_non_integer_counts_fail_in_first_rule_and_leave_nothing(tmp_path):
    write_project(
        tmp_path, CohortSpec(n_patients=3, n_controls=2, n_genes=500, n_treatment_genes=10)
    )
    counts = pd.read_csv(tmp_path / "inputs" / "counts.tsv.gz", sep="\t", index_col=0)
    counts = counts.astype(float)
    counts.iloc[5, 2] = 2.5
    counts.to_csv(tmp_path / "inputs" / "counts.tsv.gz", sep="\t")
    run = snakemake(tmp_path)
    assert run.returncode != 0
    assert "is not an integer" in run.stderr
    assert not list((tmp_path / "results").rglob("*.h5ad"))


def dry_run_beside(small_run, folder, config: dict, target: str) -> str:
    """``snakemake -n -p target`` in ``folder`` with ``config`` and the small run's inputs."""
    import yaml

    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "inputs").symlink_to(small_run / "inputs")
    dry = snakemake(folder, "-n", "-p", target)
    assert dry.returncode == 0, dry.stderr[-3000:]
    return dry.stdout + dry.stderr


def test_response_contrast_splits_patients_as_the_clinical_stage(small_run, tmp_path, monkeypatch):
    """A responders-vs-non-responders contrast at baseline uses response.tsv's calls."""
    import anndata as ad
    import yaml

    from ifnsig import de, stages

    config = yaml.safe_load((small_run / "config" / "config.yaml").read_text())
    config["de"]["contrasts"] = [
        {
            "name": "CMAS_responders_at_baseline",
            "response": "CMAS_gain_3",
            "response_at": "month6",
            "subset": {"group": ["patient"], "timepoint": ["baseline"]},
        }
    ]
    # The Snakefile plans this at parse time: a dry run shows the job reading the clinical table.
    dry = dry_run_beside(small_run, tmp_path, config, "results/de/CMAS_responders_at_baseline.tsv")
    assert "inputs/clinical.tsv" in dry

    monkeypatch.chdir(small_run)
    output = tmp_path / "responders.tsv"
    stages.differential_expression(
        config, "results/data/cohort.h5ad", {"CMAS_responders_at_baseline": str(output)}
    )
    table = pd.read_csv(output, sep="\t")
    assert table["pvalue"].notna().mean() > 0.9

    calls = pd.read_csv(small_run / "results" / "clinical" / "response.tsv", sep="\t")
    calls = calls[(calls.response == "CMAS_gain_3") & (calls.timepoint == "month6")].dropna(
        subset=["responder"]
    )
    samples = stages._samples_frame(ad.read_h5ad("results/data/cohort.h5ad"))
    (fit,) = de.plan_fits(samples, config, stages.load_design(config).clinical)
    used = fit.metadata["response_CMAS_gain_3_month6"].astype(str)
    by_subject = dict(zip(samples.loc[used.index, "subject"].astype(str), used, strict=True))
    expected = {
        str(s): "responder" if r in (True, "True") else "non_responder"
        for s, r in zip(calls.subject, calls.responder, strict=True)
    }
    assert by_subject == expected
    assert {"responder", "non_responder"} <= set(by_subject.values())
    # The plots of such a contrast, its heatmap annotated by response.
    plots = {
        name: str(tmp_path / f"{name}.png") for name in ("volcano", "ma", "pvalues", "heatmap")
    }
    stages.plot_de(
        config, str(output), "results/data/cohort.h5ad", "CMAS_responders_at_baseline", plots
    )
    assert all((tmp_path / f"{name}.png").stat().st_size > 1000 for name in plots)


def test_composition_score_as_de_covariate(small_run, tmp_path, monkeypatch):
    """A QC composition score named in de.covariates reaches the DE design, from QC's table."""
    import anndata as ad
    import yaml

    from ifnsig import de, stages
    from ifnsig.validation import check_inputs

    config = yaml.safe_load((small_run / "config" / "config.yaml").read_text())
    config["de"]["covariates"] = ["neutrophil_score"]
    dry = dry_run_beside(small_run, tmp_path, config, "results/de/month3_vs_baseline.tsv")
    assert "results/qc/composition.tsv" in dry

    monkeypatch.chdir(small_run)
    # At parse time the score is accepted by name and left out of the checked designs.
    _, fits = check_inputs(config)
    assert all("neutrophil_score" not in fit.formula for fit in fits)
    composition = "results/qc/composition.tsv"
    samples = stages._de_samples(ad.read_h5ad("results/data/cohort.h5ad"), composition)
    (fit,) = de.plan_fits(samples, config)
    assert fit.formula == "~subject + neutrophil_score + timepoint"
    expected = pd.read_csv(composition, sep="\t").set_index("sample")["neutrophil_score"]
    assert np.allclose(fit.metadata["neutrophil_score"], expected.loc[fit.samples])
    outputs = {
        "month3_vs_baseline": str(tmp_path / "m3.tsv"),
        "month6_vs_baseline": str(tmp_path / "m6.tsv"),
    }
    stages.differential_expression(config, "results/data/cohort.h5ad", outputs, 1, composition)
    assert pd.read_csv(tmp_path / "m3.tsv", sep="\t")["pvalue"].notna().mean() > 0.9


def test_unknown_score_covariate_is_rejected_at_parse_time(small_run, monkeypatch):
    import yaml

    from ifnsig.errors import InputError
    from ifnsig.validation import check_inputs

    config = yaml.safe_load((small_run / "config" / "config.yaml").read_text())
    config["de"]["covariates"] = ["eosinophil_score"]
    monkeypatch.chdir(small_run)
    with pytest.raises(InputError, match="nor a composition score of the QC stage"):
        check_inputs(config)
