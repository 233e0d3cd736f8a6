"""Malformed inputs are rejected before any heavy rule, with one sentence that names the file,
the row or column and the fix; harmless variants (BOM, Windows line endings) are accepted.

Each folder of ``tests/bad_inputs/`` is one case: ``case.yaml`` says how to derive it from
the small valid project in ``tests/bad_inputs/_base`` (configuration overrides, edits of the
base files, extra files beside it) and what must happen. Every case runs through the
workflow's own validation path in-process (what the Snakefile runs at parse time, then the
first rule); the cases marked ``cli`` also run through the real ``snakemake`` command, to show
that the message reaches the user and that nothing is written under ``results/``.
"""

from __future__ import annotations

import copy
import gzip
import logging
import re
import shutil
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import yaml
from conftest import first_rules, run_stage, snakemake

from ifnsig import stages
from ifnsig.de.plan import de_tables
from ifnsig.errors import InputError
from ifnsig.reference import FILES as REF_FILES
from ifnsig.settings import aliases_file, score_gene_set_files
from ifnsig.validation import check_inputs, validate_config

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
BASE = CORPUS / "_base"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.yaml").is_file())
CLI_CASES = [c for c in CASES if yaml.safe_load((CORPUS / c / "case.yaml").read_text()).get("cli")]
OUTPUT = "results/data/counts.h5ad"


def merge(base: dict, override: dict) -> dict:
    """``override`` merged into ``base`` key by key (nested mappings merged, others replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_edit(folder: Path, edit: dict) -> None:
    """Apply one edit of a case (see the README of the corpus) to a file of the project."""
    path = folder / edit["file"]
    if edit.get("delete"):
        path.unlink()
        return
    data = path.read_bytes()
    if "replace" in edit:
        old, new = edit["replace"].encode(), edit["with"].encode()
        assert old in data, f"edit {edit} does not apply to {path.name}"
        data = data.replace(old, new)
    if "content" in edit:
        data = edit["content"].encode()
    if "append" in edit:
        data += edit["append"].encode()
    if "keep_lines" in edit:
        data = b"".join(data.splitlines(keepends=True)[: edit["keep_lines"]])
    if edit.get("crlf"):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if edit.get("bom"):
        data = b"\xef\xbb\xbf" + data
    if "encoding" in edit:
        data = data.decode("utf-8").encode(edit["encoding"])
    if "truncate" in edit:
        data = data[: edit["truncate"]]
    if edit.get("gzip"):
        path.unlink()
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def make_project(name: str, folder: Path) -> dict:
    """Write case ``name`` into ``folder``; returns its ``case.yaml``."""
    spec = yaml.safe_load((CORPUS / name / "case.yaml").read_text())
    shutil.copytree(BASE, folder, dirs_exist_ok=True)
    for extra in (CORPUS / name).iterdir():
        if extra.name != "case.yaml":
            shutil.copy(extra, folder / extra.name)
    for edit in spec.get("edits", []):
        apply_edit(folder, edit)
    config_file = folder / "config" / "config.yaml"
    config = merge(yaml.safe_load(config_file.read_text()), spec.get("config", {}))
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return spec


def validation_path(config: dict, steps: list[str]) -> list:
    """Run what the workflow runs before any heavy work; returns the planned DE fits.

    ``steps`` records the step reached: ``parse`` is what ``workflow/rules/common.smk`` runs
    while Snakemake parses the workflow; ``counts`` is the first rules: ``build_anndata``,
    which reads the count values in full and writes the AnnData only when everything is
    valid, then ``geneset_coverage``, which matches the signatures to the genes.
    """
    steps.append("parse")
    _, fits = check_inputs(config)
    steps.append("counts")
    first_rules(config)
    return fits


SCORE_OUTPUTS = {
    "scores": "results/scores/ifn_scores.tsv",
    "obs": "results/scores/cohort_obs.tsv",
    "agreement": "results/scores/method_agreement.tsv",
    "group_comparison": "results/scores/group_comparison.tsv",
    "type_contrast": "results/scores/type1_vs_type2.tsv",
    "mixture_fits": "results/scores/mixture_fits.tsv",
    **{
        name: f"results/plots/scores/{file}.png"
        for name, file in [
            ("over_time", "ifn_scores_over_time"),
            ("heatmap", "signature_heatmap"),
            ("distributions", "score_distributions"),
            ("type1_vs_type2", "type1_vs_type2"),
        ]
    },
    **{f"reference_{key}": f"results/scores/reference/{name}" for key, name in REF_FILES.items()},
}


def later_rules(config: dict, rules: list[str]) -> None:
    """Run ``rules`` in-process after the first rules, in order, with their outputs at the
    workflow's paths: for cases whose data first meet their code in a later job."""
    validated = validate_config(copy.deepcopy(config))
    clinical = {"clinical": config["clinical"]} if config.get("clinical") else {}
    jobs = {
        "call_responses": (
            {"samples": "results/data/samples.tsv", **clinical},
            {
                "changes": "results/clinical/changes.tsv",
                "response": "results/clinical/response.tsv",
            },
        ),
        "filter_genes": (
            {"counts": "results/data/counts.h5ad"},
            {"filtered": "results/data/filtered_counts.h5ad"},
        ),
        "normalize": (
            {"filtered": "results/data/filtered_counts.h5ad"},
            {"normalized": "results/data/normalized.h5ad"},
        ),
        "score_ifn": (
            {
                "normalized": "results/data/normalized.h5ad",
                "gene_sets": score_gene_set_files(validated),
                "aliases": aliases_file(),
            },
            SCORE_OUTPUTS,
        ),
    }
    linkage = ["score_changes", "paired_tests", "correlations", "baseline_prediction"]
    jobs["clinical_linkage"] = (
        {
            "scores": SCORE_OUTPUTS["scores"],
            "samples": "results/data/samples.tsv",
            **{name: jobs["call_responses"][1][name] for name in ["changes", "response"]},
            **clinical,
        },
        {
            **{name: f"results/clinical/{name}.tsv" for name in [*linkage, "mixed_models"]},
            **{
                name: f"results/plots/clinical/{name}.png"
                for name in ["change_scatter", "trajectories", "roc"]
            },
        },
    )
    tables = de_tables(validated)
    jobs["differential_expression"] = (
        {"filtered": "results/data/filtered_counts.h5ad"},
        {
            "design_checks": "results/de/design_checks.tsv",
            **{name: f"results/de/{name}.tsv" for name in tables},
            **{f"{name}.samples": f"results/de/{name}.samples.tsv" for name in tables},
        },
    )
    # Library warnings reach the log as a job's would: once each, the known ones explained.
    shown, warnings.showwarning = warnings.showwarning, stages._WarningLog()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            for rule in rules:
                inputs, outputs = jobs[rule]
                for path in outputs.values():
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                run_stage(rule, config, inputs, outputs)
    finally:
        warnings.showwarning = shown


def assert_is_one_sentence(message: str, spec: dict) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert message.endswith("."), message
    # A second sentence would start after a full stop; file names and "e.g." do not count.
    assert not re.search(r"[a-z)]\. [A-Z]", message), f"more than one sentence: {message}"
    assert spec["file"] in message, f"{spec['file']} not named: {message}"
    for fragment in spec["message"]:
        assert fragment in message, f"{fragment!r} not in: {message}"


def test_corpus_is_large_and_every_case_is_described():
    assert len(CASES) >= 25
    for name in CASES:
        spec = yaml.safe_load((CORPUS / name / "case.yaml").read_text())
        assert spec["expect"] in {"error", "warning", "handled", "accepted"}, name
        assert spec.get("summary"), name
        if spec["expect"] == "error":
            assert spec["stage"] in {"parse", "counts"} and spec["file"] and spec["message"], name


def test_base_project_is_valid(tmp_path, monkeypatch):
    shutil.copytree(BASE, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    validation_path(yaml.safe_load(Path("config/config.yaml").read_text()), [])
    assert ad.read_h5ad(OUTPUT).shape == (10, 15)


@pytest.fixture(scope="module")
def base_anndata(tmp_path_factory) -> ad.AnnData:
    folder = tmp_path_factory.mktemp("base")
    shutil.copytree(BASE, folder, dirs_exist_ok=True)
    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    config.update(counts=str(folder / config["counts"]), samples=str(folder / config["samples"]))
    config["clinical"] = str(folder / config["clinical"])
    return ad.read_h5ad(first_rules(config, folder)["counts"])


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, tmp_path, monkeypatch, caplog, base_anndata):
    spec = make_project(name, tmp_path)
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(Path("config/config.yaml").read_text())
    caplog.set_level(logging.WARNING)
    steps: list[str] = []
    if spec["expect"] == "error":
        with pytest.raises(InputError) as info:
            validation_path(config, steps)
        assert steps[-1] == spec["stage"], f"caught at {steps[-1]}, expected {spec['stage']}"
        assert_is_one_sentence(str(info.value), spec)
        written = {str(p) for p in Path("results").rglob("*") if p.is_file()}
        assert written == set(spec.get("written", [])), written
        return
    caplog.set_level(logging.INFO)
    fits = validation_path(config, steps)
    later_rules(config, spec.get("rules", []))
    adata = ad.read_h5ad(OUTPUT)
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    logged = " ".join(r.getMessage() for r in caplog.records)
    if spec.get("quiet"):
        library = [r.getMessage() for r in caplog.records if r.name == "py.warnings"]
        assert not library, f"library warnings logged unexplained: {library}"
    if spec["expect"] in {"warning", "handled"}:
        for fragment in spec.get("warning", []):
            assert fragment in warnings, f"{fragment!r} not in warnings: {warnings}"
        for fragment in spec.get("log", []):
            assert fragment in logged, f"{fragment!r} not in the log: {logged}"
        for path, fragments in spec.get("outputs", {}).items():
            text = Path(path).read_text()
            for fragment in fragments:
                assert fragment in text, f"{fragment!r} not in {path}: {text[:2000]}"
        if "obs" in spec:
            for column, values in spec["obs"].items():
                assert sorted(set(adata.obs[column].astype(str))) == sorted(values), column
        fitted = {s for fit in fits for s in fit.samples}
        assert fitted and not fitted & set(spec.get("left_out", []))
        # Samples listed under exclude_samples are left out before any check.
        assert set(config.get("exclude_samples", [])).isdisjoint(adata.obs_names)
        return
    assert not warnings
    # An accepted variant gives exactly the AnnData of the base project.
    assert list(adata.obs_names) == list(base_anndata.obs_names)
    assert list(adata.var_names) == list(base_anndata.var_names)
    np.testing.assert_array_equal(adata.X, base_anndata.X)
    assert adata.obs.astype(str).equals(base_anndata.obs.astype(str))


@pytest.mark.e2e
@pytest.mark.parametrize("name", CLI_CASES)
def test_message_reaches_the_user_and_nothing_is_written(name, tmp_path):
    spec = make_project(name, tmp_path)
    run = snakemake(tmp_path, "--cores", "1")
    assert run.returncode != 0
    shown = [line for line in run.stderr.splitlines() if "Input error: " in line]
    assert shown, run.stderr[-3000:]
    assert_is_one_sentence(shown[0].split("Input error: ", 1)[1], spec)
    assert "Traceback" not in run.stderr
    written = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "results").rglob("*")}
    assert {p for p in written if (tmp_path / p).is_file()} == set(spec.get("written", []))
    assert not (tmp_path / "pwned").exists()
