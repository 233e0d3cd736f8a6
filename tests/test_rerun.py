"""Results follow their inputs and settings: a finished project, edited, reruns exactly what
the edit affects.

Every case copies the session's finished small run (a clone of the workflow with its inputs,
config and results), edits one setting or input file, and asks Snakemake (dry run) which
jobs it would run and why. The copy itself, moved to another folder, has nothing to do; its
jobs import the workflow's own ``ifnsig`` even when another one comes first on the path; and
a rerun after excluding a sample leaves no trace of it under ``results/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path

import anndata as ad
import pytest
import yaml
from conftest import USER_GMT, snakemake

# The session's small run is shared by both pytest-xdist workers (see conftest.small_run).
pytestmark = pytest.mark.e2e

EXCLUDED = "JDM01_month3"

EVERY_JOB = Counter(
    {
        "build_anndata": 1,
        "filter_genes": 1,
        "normalize": 1,
        "export_matrices": 1,
        "quality_control": 1,
        "geneset_coverage": 1,
        "score_ifn": 1,
        "differential_expression": 1,
        "plot_de": 2,
        "enrichment": 2,
        "call_responses": 1,
        "clinical_linkage": 1,
        "annotate_cohort": 1,
        "summarize_findings": 1,
    }
)
# The findings page reads every result table: it follows any edit but its own key's.
FINDINGS = Counter({"summarize_findings": 1})
FROM_FILTERING = EVERY_JOB - Counter(["build_anndata", "geneset_coverage", "call_responses"])
DE_AND_AFTER = Counter({"differential_expression": 1, "plot_de": 2, "enrichment": 2}) + FINDINGS
SCORES_AND_AFTER = Counter({"score_ifn": 1, "clinical_linkage": 1, "annotate_cohort": 1}) + FINDINGS
GENE_SETS_AND_AFTER = SCORES_AND_AFTER + Counter(
    {"geneset_coverage": 1, "plot_de": 2, "enrichment": 2}
)
CLINICAL = Counter({"call_responses": 1, "clinical_linkage": 1}) + FINDINGS


@pytest.fixture(scope="module")
def moved_run(small_run, tmp_path_factory) -> Path:
    """The finished small run, copied (times kept) into a folder at another depth."""
    folder = tmp_path_factory.mktemp("moved") / "elsewhere" / "project"
    shutil.copytree(small_run, folder, symlinks=True)
    return folder


def copy_of(run: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(run, folder, symlinks=True)
    return folder


def edit_config(folder: Path, change) -> None:
    path = folder / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def edit_file(folder: Path, name: str, old: str, new: str, count: int = 1) -> None:
    path = folder / name
    text = path.read_text()
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, count))


def planned_jobs(folder: Path) -> tuple[Counter, dict[str, list[str]]]:
    """The jobs a dry run lists (rule -> count, ``all`` left out) and each one's reasons."""
    dry = snakemake(folder, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    text = dry.stdout + dry.stderr
    jobs: Counter = Counter()
    reasons: dict[str, list[str]] = {}
    for rule, reason in re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+reason: (.*)$", text, re.M):
        if rule != "all":
            jobs[rule] += 1
            reasons.setdefault(rule, []).append(reason)
    return jobs, reasons


def edit_clinical_value(folder: Path) -> None:
    """One CMAS value of the clinical table moved by a point."""
    path = folder / "inputs" / "clinical.tsv"
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    cells = lines[1].split("\t")
    column = header.index("CMAS")
    cells[column] = str(float(cells[column]) - 1)
    path.write_text("\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n")


def raise_first_response_threshold(config: dict) -> None:
    definition = config["linkage"]["responses"][0]
    definition["at_least"] += 1


def add_module(config: dict) -> None:
    """The user GMT's set scored as a co-expression module too."""
    config["scores"].update(methods=[*config["scores"]["methods"], "module_activity"])
    config["scores"]["modules"] = ["MY_ISGS"]


def freeze_own_reference(folder: Path) -> None:
    """The run's saved reference copied aside and named as scores.frozen_reference."""
    shutil.copytree(folder / "results" / "scores" / "reference", folder / "saved_reference")
    edit_config(folder, lambda c: c["scores"].update(frozen_reference="saved_reference"))


def list_size_factor_genes(folder: Path) -> None:
    """The DE's size factors from a file of genes: every other gene of the cohort."""
    genes = ad.read_h5ad(folder / "results" / "data" / "normalized.h5ad", backed="r").var_names
    (folder / "inputs" / "size_factor_genes.txt").write_text("\n".join(genes[::2]) + "\n")
    path = "inputs/size_factor_genes.txt"
    edit_config(folder, lambda c: c["de"].update(size_factor_genes=path))


CASES = {
    "exclude_samples": (
        lambda f: edit_config(f, lambda c: c.update(exclude_samples=[EXCLUDED])),
        EVERY_JOB,
    ),
    "sample sheet": (
        lambda f: edit_file(f, "inputs/samples.tsv", "\tb1\t", "\tb3\t"),
        EVERY_JOB,
    ),
    "filtering.min_count": (
        lambda f: edit_config(f, lambda c: c["filtering"].update(min_count=5)),
        FROM_FILTERING,
    ),
    "tissue": (
        lambda f: edit_config(f, lambda c: c.update(tissue="muscle")),
        Counter({"quality_control": 1, "annotate_cohort": 1}) + FINDINGS,
    ),
    "qc.metric_mads": (
        lambda f: edit_config(f, lambda c: c["qc"].update(metric_mads=4)),
        Counter({"quality_control": 1, "annotate_cohort": 1}) + FINDINGS,
    ),
    "scores.methods": (
        lambda f: edit_config(f, lambda c: c["scores"].update(methods=["median_fold_change"])),
        SCORES_AND_AFTER,
    ),
    "scores.positivity_sd": (
        lambda f: edit_config(f, lambda c: c["scores"].update(positivity_sd=3)),
        SCORES_AND_AFTER,
    ),
    "scores.positivity_rule": (
        lambda f: edit_config(f, lambda c: c["scores"].update(positivity_rule="mixture")),
        SCORES_AND_AFTER,
    ),
    "scores.positivity_fallback": (
        lambda f: edit_config(f, lambda c: c["scores"].update(positivity_fallback="mixture")),
        SCORES_AND_AFTER,
    ),
    "scores.positivity_quantile": (
        lambda f: edit_config(f, lambda c: c["scores"].update(positivity_quantile=0.95)),
        SCORES_AND_AFTER,
    ),
    "scores.module_active_percent": (
        lambda f: edit_config(f, lambda c: c["scores"].update(module_active_percent=20)),
        SCORES_AND_AFTER,
    ),
    "scores.reference_max_missing": (
        lambda f: edit_config(f, lambda c: c["scores"].update(reference_max_missing=0.1)),
        SCORES_AND_AFTER,
    ),
    "scores.modules": (
        lambda f: edit_config(f, add_module),
        SCORES_AND_AFTER + Counter({"geneset_coverage": 1}),
    ),
    "scores.frozen_reference": (
        freeze_own_reference,
        SCORES_AND_AFTER,
    ),
    "scores.primary_signature": (
        lambda f: edit_config(f, lambda c: c["scores"].update(primary_signature="NIH28")),
        SCORES_AND_AFTER + Counter({"plot_de": 2}),
    ),
    "user GMT": (
        lambda f: edit_file(f, USER_GMT, "\tMX1", "\tMX1\tOAS1"),
        GENE_SETS_AND_AFTER,
    ),
    "de.alpha": (
        lambda f: edit_config(f, lambda c: c["de"].update(alpha=0.05)),
        DE_AND_AFTER,
    ),
    "de.contrasts": (
        lambda f: edit_config(
            f,
            lambda c: c["de"].update(
                contrasts=[
                    {
                        "name": "month6_vs_baseline",
                        "test": "month6",
                        "reference": "baseline",
                        "subset": {"group": ["patient"], "drug": ["ruxolitinib"]},
                    }
                ]
            ),
        ),
        Counter({"differential_expression": 1, "plot_de": 1, "enrichment": 1}) + FINDINGS,
    ),
    "de.covariates (clinical)": (
        lambda f: edit_config(f, lambda c: c["de"].update(covariates=["prednisone_mg_kg_day"])),
        DE_AND_AFTER,
    ),
    "de.shards": (
        lambda f: edit_config(f, lambda c: c["de"].update(shards=2)),
        DE_AND_AFTER
        + Counter(
            {
                "de_size_factors": 1,
                "de_genewise_dispersions": 2,
                "de_dispersion_prior": 1,
                "de_shard_tests": 2,
            }
        ),
    ),
    "de.size_factor_genes": (
        lambda f: edit_config(f, lambda c: c["de"].update(size_factor_genes="exclude_signatures")),
        DE_AND_AFTER,
    ),
    "de.size_factor_genes (gene list)": (
        list_size_factor_genes,
        DE_AND_AFTER,
    ),
    "enrichment.permutations": (
        lambda f: edit_config(f, lambda c: c["enrichment"].update(permutations=150)),
        Counter({"enrichment": 2}) + FINDINGS,
    ),
    "enrichment.set_test_permutations": (
        lambda f: edit_config(f, lambda c: c["enrichment"].update(set_test_permutations=999)),
        Counter({"enrichment": 2}) + FINDINGS,
    ),
    "linkage.responses": (
        lambda f: edit_config(f, raise_first_response_threshold),
        CLINICAL,
    ),
    "linkage.bootstrap": (
        lambda f: edit_config(f, lambda c: c["linkage"].update(bootstrap=500)),
        Counter({"clinical_linkage": 1}) + FINDINGS,
    ),
    "linkage.groups": (
        lambda f: edit_config(f, lambda c: c["linkage"].update(groups=["sex"])),
        Counter({"clinical_linkage": 1}) + FINDINGS,
    ),
    "scores.compare": (
        lambda f: edit_config(
            f,
            lambda c: c["scores"].update(
                compare={"column": "drug", "test": "tofacitinib", "reference": "ruxolitinib"}
            ),
        ),
        SCORES_AND_AFTER,
    ),
    "clinical value": (
        edit_clinical_value,
        CLINICAL,
    ),
    "seed": (
        lambda f: edit_config(f, lambda c: c.update(seed=c["seed"] + 1)),
        SCORES_AND_AFTER + Counter({"quality_control": 1, "enrichment": 2}),
    ),
    "findings.top_gene_sets": (
        lambda f: edit_config(f, lambda c: c.setdefault("findings", {}).update(top_gene_sets=3)),
        FINDINGS,
    ),
}

REASONS = ("Params have changed", "Input files updated by another job", "Updated input files",
           "Set of input files has changed", "Missing output files")  # fmt: skip


def test_a_moved_project_has_nothing_to_do(moved_run):
    dry = snakemake(moved_run, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]


@pytest.mark.parametrize("case", list(CASES))
def test_an_edit_reruns_exactly_what_it_affects(moved_run, tmp_path, case):
    edit, expected = CASES[case]
    folder = copy_of(moved_run, tmp_path)
    edit(folder)
    jobs, reasons = planned_jobs(folder)
    assert jobs == expected, f"{case}: planned {dict(jobs)}, expected {dict(expected)}"
    for rule, given in reasons.items():
        assert all(r.startswith(REASONS) for r in given), f"{case}, {rule}: {given}"


def test_jobs_import_the_workflow_package_not_an_installed_one(moved_run, tmp_path):
    # A decoy ifnsig ahead of everything else on the path, as a copy installed from another
    # checkout would be: importing it fails the job.
    decoy = tmp_path / "decoy" / "ifnsig"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('raise ImportError("the decoy ifnsig was imported")\n')
    folder = copy_of(moved_run, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    run = snakemake(folder, "--forcerun", "export_matrices", "geneset_coverage",
                    "--until", "export_matrices", "geneset_coverage", env=env)  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "decoy" not in log
    assert "rule export_matrices:" in log and "rule geneset_coverage:" in log


def test_an_excluded_sample_leaves_no_trace_in_results(moved_run, tmp_path):
    folder = copy_of(moved_run, tmp_path)
    assert EXCLUDED in (folder / "results" / "data" / "samples.tsv").read_text()
    edit_config(folder, lambda c: c.update(exclude_samples=[EXCLUDED]))
    # Every job reruns but the DE plots: their images cannot be searched for the sample, so
    # they are removed and not drawn again.
    for plot in (folder / "results" / "plots" / "de").glob("*.png"):
        plot.unlink()
    run = snakemake(folder, "--omit-from", "plot_de")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rule summarize_findings:" in run.stdout + run.stderr
    for path in (folder / "results").rglob("*"):
        if path.suffix in (".tsv", ".yaml", ".txt", ".json"):
            assert EXCLUDED not in path.read_text(), path
        elif path.suffix == ".h5ad":
            assert EXCLUDED not in ad.read_h5ad(path).obs_names, path


# --- config errors name their source; command-line settings --------------------------------------


def input_error(run) -> str:
    text = run.stdout + run.stderr
    shown = [line for line in text.splitlines() if "Input error: " in line]
    assert run.returncode != 0 and shown, text[-3000:]
    assert "Traceback" not in text
    return shown[0].split("Input error: ", 1)[1]


def test_a_yaml_syntax_error_names_the_config_file_and_line(moved_run, tmp_path):
    folder = copy_of(moved_run, tmp_path)
    edit_file(folder, "config/config.yaml", "seed:", "seed: [\n  oops:")
    message = input_error(snakemake(folder, "-n"))
    assert re.match(r"config/config.yaml: line \d+, column \d+: ", message), message


def test_a_value_from_configfile_is_blamed_on_that_file(moved_run, tmp_path):
    folder = copy_of(moved_run, tmp_path)
    (folder / "site.yaml").write_text("scores:\n  positivity_sd: -1\n")
    message = input_error(snakemake(folder, "-n", "--configfile", str(folder / "site.yaml")))
    assert message.startswith("site.yaml: the value of 'scores.positivity_sd' is invalid"), message


def test_nested_command_line_values_take_effect(moved_run, tmp_path):
    folder = copy_of(moved_run, tmp_path)
    dry = snakemake(folder, "-n", "--config", "de={alpha: 0.05}")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "'alpha': 0.05" in dry.stdout + dry.stderr
    bad = snakemake(folder, "-n", "--config", "de={alpha: 2}")
    assert input_error(bad).startswith("--config: the value of 'de.alpha' is invalid")


def test_every_rule_describes_itself(moved_run):
    listed = snakemake(moved_run, "--list-rules")
    assert listed.returncode == 0, listed.stderr[-3000:]
    # "rule (its one-line description)"
    described = re.findall(r"^(\w+) \((.+)\)$", listed.stdout, re.M)
    assert len(described) >= 12, listed.stdout
    assert all(len(text) > 20 for _, text in described), described
