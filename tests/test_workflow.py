"""End to end: the real snakemake on small cohorts from the demo simulator and on the
session's small run.

The workflow deployed as a Snakemake module is run (and compared with the clone's run byte
for byte) in tests/test_reproducible.py; what a larger cohort plants, found by the whole
run, is checked by benchmarks/planted_truth_run.py."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import run_stage, snakemake, write_project

from ifnsig import demo
from ifnsig.settings import score_gene_set_files
from ifnsig.simulate import CohortSpec

pytestmark = pytest.mark.e2e


# The planted truth that the session's small cohort (6 patients) has the power to show; the
# 20-patient run of benchmarks/planted_truth_run.py checks these and the rest.
def test_baseline_positivity_agrees_with_planted_truth(small_run):
    merged = demo.baseline_positivity(small_run)
    assert len(merged) == 6
    assert (merged["positive"] == merged["ifn_high"]).mean() >= 0.9


def test_planted_de_genes_found_at_low_observed_fdr(small_run):
    calls_per_planted, observed_fdr = demo.planted_de_calls(small_run, "month6_vs_baseline")
    assert calls_per_planted > 0.5 and observed_fdr <= 0.10


def test_shipped_ifn_sets_are_enriched_in_planted_direction(small_run):
    prerank = demo.run_table(small_run, "results/enrichment/month6_vs_baseline.prerank.tsv")
    rows = prerank.set_index("gene_set").loc[["RICE2013_6", "NIH28"]]
    assert (rows["nes"] < 0).all() and (rows["fdr"] < 0.05).all()


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
    # 4 patients: both drugs, as the demo config's linkage.groups needs at parse time.
    write_project(
        tmp_path, CohortSpec(n_patients=4, n_controls=2, n_genes=500, n_treatment_genes=10)
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
    import yaml

    config = yaml.safe_load((small_run / "config" / "config.yaml").read_text())
    config["de"]["contrasts"] = [
        {
            "name": "CMAS_responders_at_baseline",
            "response": "CMAS_gain_3",
            "response_at": "month6",
            "subset": {"group": ["patient"], "timepoint": ["baseline"]},
        }
    ]
    # The Snakefile plans this at parse time: the DE job reads the response calls, and not
    # the clinical table (no clinical covariate).
    dry = dry_run_beside(small_run, tmp_path, config, "results/de/CMAS_responders_at_baseline.tsv")
    assert "results/clinical/response.tsv" in dry and "inputs/clinical.tsv" in dry
    de_job = dry[dry.index("rule differential_expression:") :].split("rule ")[1]
    assert "response.tsv" in de_job and "clinical.tsv" not in de_job

    monkeypatch.chdir(small_run)
    name = "CMAS_responders_at_baseline"
    outputs = {
        name: str(tmp_path / "responders.tsv"),
        f"{name}.samples": str(tmp_path / "s.tsv"),
        "design_checks": str(tmp_path / "design_checks.tsv"),
    }
    inputs = {
        "filtered": "results/data/filtered_counts.h5ad",
        "responses": "results/clinical/response.tsv",
    }
    run_stage("differential_expression", config, inputs, outputs)
    table = pd.read_csv(outputs[name], sep="\t")
    assert table["pvalue"].notna().mean() > 0.9

    calls = pd.read_csv("results/clinical/response.tsv", sep="\t")
    calls = calls[(calls.response == "CMAS_gain_3") & (calls.timepoint == "month6")].dropna(
        subset=["responder"]
    )
    fitted = pd.read_csv(outputs[f"{name}.samples"], sep="\t", dtype=str)
    assert set(fitted["compared"]) == {"response"}
    by_subject = dict(zip(fitted["subject"], fitted["response"], strict=True))
    expected = {
        str(s): "responder" if r in (True, "True") else "non_responder"
        for s, r in zip(calls.subject, calls.responder, strict=True)
    }
    assert by_subject == expected
    assert {"responder", "non_responder"} <= set(by_subject.values())
    # The plots of such a contrast, its heatmap annotated by response, from the fitted samples.
    plots = {
        plot: str(tmp_path / f"{plot}.png") for plot in ("volcano", "ma", "pvalues", "heatmap")
    }
    plot_inputs = {
        "de": outputs[name],
        "samples": outputs[f"{name}.samples"],
        "normalized": "results/data/normalized.h5ad",
        "gene_sets": score_gene_set_files(config),
    }
    run_stage("plot_de", config, plot_inputs, plots)
    assert all(Path(path).stat().st_size > 1000 for path in plots.values())


def test_composition_score_as_de_covariate(small_run, tmp_path, monkeypatch):
    """A QC composition score named in de.covariates reaches the DE design, from QC's table."""
    import yaml

    from ifnsig import de
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
    samples = de.cohort_samples(ad.read_h5ad("results/data/normalized.h5ad").obs, composition)
    (fit,) = de.plan_fits(samples, config)
    assert fit.formula == "~subject + neutrophil_score + timepoint"
    expected = pd.read_csv(composition, sep="\t").set_index("sample")["neutrophil_score"]
    assert np.allclose(fit.metadata["neutrophil_score"], expected.loc[fit.samples])
    outputs = {
        f"{name}{suffix}": str(tmp_path / f"{name}{suffix}.tsv")
        for name in ("month3_vs_baseline", "month6_vs_baseline")
        for suffix in ("", ".samples")
    }
    outputs["design_checks"] = str(tmp_path / "design_checks.tsv")
    inputs = {"filtered": "results/data/filtered_counts.h5ad", "composition": composition}
    run_stage("differential_expression", config, inputs, outputs)
    m3 = pd.read_csv(outputs["month3_vs_baseline"], sep="\t")
    assert m3["pvalue"].notna().mean() > 0.9
    assert "neutrophil_score" in pd.read_csv(outputs["month3_vs_baseline.samples"], sep="\t")


def test_unknown_score_covariate_is_rejected_at_parse_time(small_run, monkeypatch):
    import yaml

    from ifnsig.errors import InputError
    from ifnsig.validation import check_inputs

    config = yaml.safe_load((small_run / "config" / "config.yaml").read_text())
    config["de"]["covariates"] = ["eosinophil_score"]
    monkeypatch.chdir(small_run)
    with pytest.raises(InputError, match="nor a composition score of the QC stage"):
        check_inputs(config)


def test_a_successful_run_logs_no_error_and_explains_its_warnings(small_run):
    # A finished run has no line at level ERROR (e.g. gseapy's "No hits returned") and no
    # traceback in any job's log; a library warning is logged once per job, a known one with
    # its explanation.
    from ifnsig.stages import EXPLAINED_WARNINGS

    logs = sorted((small_run / "logs").rglob("*.log"))
    assert logs
    for path in logs:
        text = path.read_text()
        assert not re.search(r"\bERROR\b|Traceback", text), (path, text[-2000:])
        for _, _, explanation in EXPLAINED_WARNINGS:
            assert text.count(explanation) <= 1, (path, explanation)
        library = [line.split(" py.warnings: ", 1)[1] for line in text.splitlines()
                   if " py.warnings: " in line]  # fmt: skip
        assert len(library) == len(set(library)), (path, library)
