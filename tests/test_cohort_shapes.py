"""End to end on cohorts of other shapes: response labels without clinical measures, and two
groups at one timepoint (cases vs controls). Each shape is one small real snakemake run,
shared by its tests."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
import yaml
from conftest import SMALL_SPEC, snakemake, write_project
from test_report import MATRICES, embedded, findings_page, viewer_tables

from ifnsig.demo import run_table
from ifnsig.simulate import CohortSpec

# The workflow runs share one pytest-xdist worker.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("workflow")]

FEW = {
    "scores": {"signatures": ["RICE2013_6", "NIH28"], "methods": ["median_fold_change"]},
    "enrichment": {"permutations": 20, "blood_modules": False},
}


def _config(folder, change) -> None:
    path = folder / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key, values in FEW.items():
        config[key].update(values)
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def labels_run(small_run, tmp_path_factory):
    """The session's small run, copied, with its clinical table replaced by the planted
    response labels alone (subject, timepoint, responder; no measure): snakemake reruns
    what the clinical table and the linkage settings reach, the rest is the shared run's."""
    folder = tmp_path_factory.mktemp("labels") / "project"
    shutil.copytree(small_run, folder, symlinks=True)
    # The clinical results of the full run go: what the new shape writes is then all there is.
    for stale in ["results/clinical", "results/plots/clinical"]:
        shutil.rmtree(folder / stale)
    truth = run_table(folder, "inputs/truth_subjects.tsv").set_index("subject")["responder"]
    clinical = run_table(folder, "inputs/clinical.tsv")[["subject", "timepoint"]]
    clinical["responder"] = clinical["subject"].map(truth).map({True: "yes", False: "no"})
    clinical.to_csv(folder / "inputs" / "clinical.tsv", sep="\t", index=False)

    def labels_only(config):
        config["clinical_measures"] = {}
        config["linkage"].update(
            responses=[{"name": "planted", "type": "column", "column": "responder"}],
            primary_response="planted",
            covariates=[],
            groups=["drug"],
        )

    path = folder / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    labels_only(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run = snakemake(folder)
    assert run.returncode == 0, run.stderr[-4000:]
    return folder, run.stderr


def test_labels_only_cohort_runs_the_linkage_on_its_labels(labels_run):
    folder, log = labels_run
    calls = run_table(folder, "results/clinical/response.tsv")
    truth = run_table(folder, "inputs/truth_subjects.tsv").query("group == 'patient'")
    truth = truth.set_index("subject")["responder"]
    month6 = calls[calls["timepoint"] == "month6"].set_index("subject")["responder"]
    assert (month6 == truth.loc[month6.index]).all() and len(month6) == SMALL_SPEC.n_patients
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", log, re.M))
    # The rest is shared (the findings page reads the clinical tables).
    assert jobs == {"call_responses", "clinical_linkage", "summarize_findings", "all"}, jobs
    # No measure: no change table, no correlation, no mixed model of measures; said so.
    for path in ["clinical/changes.tsv", "clinical/correlations.tsv", "clinical/mixed_models.tsv"]:
        assert not (folder / "results" / path).exists(), path
    assert "call_responses: not computed: changes (no clinical measure" in log
    linkage_log = (folder / "logs/clinical/clinical_linkage.log").read_text()
    assert "not computed: correlations, mixed_models, change_scatter" in linkage_log
    # Responders against non-responders by their labels, and by drug: the change from
    # baseline between the groups, and the timepoint x group models.
    row = run_table(
        folder,
        "results/clinical/trajectory_between.tsv",
        grouping="planted",
        signature="RICE2013_6",
        method="median_fold_change",
        timepoint="month6",
    ).iloc[0]
    assert row["n_test"] == truth.sum() and row["n_reference"] == (~truth).sum()
    assert row["estimate"] < 0 and pd.notna(row["pvalue"])
    models = run_table(folder, "results/clinical/trajectory_models.tsv")
    assert set(models["grouping"]) == {"planted", "drug"} and models["pvalue"].notna().all()
    for path in [
        "clinical/baseline_prediction.tsv",
        "clinical/trajectory_within.tsv",
        "clinical/normalisation.tsv",
        "clinical/normalisation_tests.tsv",
        "plots/clinical/trajectories_by_group.png",
        "plots/clinical/baseline_score_roc.png",
    ]:
        assert (folder / "results" / path).stat().st_size > 0, path


@pytest.fixture(scope="module")
def cross_sectional_run(tmp_path_factory):
    """JDM patients and healthy controls at one timepoint, no clinical table; the groups
    named as the configuration names them."""
    folder = tmp_path_factory.mktemp("cross_sectional")
    spec = CohortSpec(
        n_patients=10, n_controls=8, n_genes=600, n_treatment_genes=20, seed=9,
        timepoints=("baseline",),
    )  # fmt: skip
    write_project(folder, spec)
    sheet = folder / "inputs" / "samples.tsv"
    samples = pd.read_csv(sheet, sep="\t")
    samples["group"] = samples["group"].map({"patient": "JDM", "control": "healthy"})
    samples.to_csv(sheet, sep="\t", index=False)

    def cross_sectional(config):
        config.update(clinical=None, groups={"patient": "JDM", "control": "healthy"})
        config["clinical_measures"] = {}
        config["linkage"].update(responses=[], primary_response=None, covariates=[], groups=[])

    _config(folder, cross_sectional)
    run = snakemake(folder)
    assert run.returncode == 0, run.stderr[-4000:]
    report = folder / "report.html"
    made = snakemake(folder, "--report", str(report))
    assert made.returncode == 0, made.stderr[-4000:]
    return folder, run.stderr, report.read_text()


def test_cross_sectional_cohort_tests_scores_between_the_named_groups(cross_sectional_run):
    folder, log, _ = cross_sectional_run
    table = run_table(folder, "results/scores/group_comparison.tsv")
    assert set(table["test_group"]) == {"JDM"} and set(table["reference_group"]) == {"healthy"}
    assert set(table["timepoint"]) == {"baseline"}
    rice = table.set_index("signature").loc["RICE2013_6"]
    assert rice["n_test"] == 10 and rice["n_reference"] == 8
    assert rice["estimate"] > 0.8 and rice["pvalue"] < 0.05 and rice["ci_low"] > 0.5
    assert rice["direction"] == "higher in JDM than in healthy"
    # Nothing of the clinical or DE stages: no job, one line each, no table without rows.
    assert not (folder / "results" / "clinical").exists()
    assert not (folder / "results" / "qc" / "composition_changes.tsv").exists()
    for stage in ["clinical_linkage", "differential_expression", "quality_control"]:
        assert re.search(rf"^{stage}: not computed: .*one timepoint", log, re.M), stage
    for path in (folder / "results").rglob("*.tsv"):
        # Tables of checks that found nothing keep their header: no flag, no confounding.
        checks = {"qc_flags.tsv", "design_checks.tsv"}
        assert len(path.read_text().splitlines()) > 1 or path.name in checks, path


def test_cross_sectional_report_lists_every_output_and_what_was_not_computed(
    cross_sectional_run,
):
    folder, _, html = cross_sectional_run
    results = embedded(html, "results")
    written = {
        p.relative_to(folder).as_posix()
        for p in (folder / "results").rglob("*")
        if p.suffix in (".tsv", ".png") and "_mqc." not in p.name
    }
    # The large genes x samples matrices stay files outside the report; the per-gene tables
    # are held by the findings page's viewer.
    written -= MATRICES
    in_report = set(results) | set(viewer_tables(findings_page(html)))
    assert written <= in_report, sorted(written - in_report)
    description = re.sub(r"<[^>]+>", " ", embedded(html, "workflow_desc"))
    assert "Not computed in this run" in description
    assert "clinical_linkage: not computed" in description
