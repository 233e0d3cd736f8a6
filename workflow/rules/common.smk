# Validation at parse time, the contrast plan, settings and input functions.
# The package lives beside the rules (workflow/ifnsig), so the workflow runs from a clone,
# or deployed as a module, without installing it; config_file.smk put it first on
# sys.path, ahead of any other installed ifnsig, and the scripts do the same
# (workflow/scripts/workflow_package.py).
import os
import sys

from snakemake.exceptions import WorkflowError

from ifnsig.de import (
    clinical_covariates,
    composition_covariates,
    contrasts_from_config,
    uses_responses,
)
from ifnsig.errors import InputError
from ifnsig.genesets import SHIPPED_ALIASES, SHIPPED_GMT
from ifnsig.qc import SHIPPED_MARKERS
from ifnsig.settings import stage_settings
from ifnsig.validation import ConfigSources, check_inputs

# Everything except the count values is checked here, before any job is scheduled; the
# first rule checks the counts in full before writing anything. Messages about a setting
# name the file (or --config) it came from.
try:
    SOURCES = ConfigSources.of_workflow(workflow, "config/config.yaml")
    check_inputs(config, SOURCES)
except InputError as err:
    sys.exit(f"Input error: {err}")

CONTRASTS = [c.name for c in contrasts_from_config(config)]


wildcard_constraints:
    contrast="|".join(CONTRASTS) or "NO_CONTRAST",


def settings(stage):
    """The config keys ``stage`` uses (ifnsig.settings), as the rule's params."""
    return stage_settings(config, stage)


def shipped(path):
    """A file shipped with the workflow, relative to the working directory: a project copied
    or moved with its clone keeps its paths, and a deployed module finds its own files.
    """
    return os.path.relpath(path)


def sheet_inputs():
    """The files the first rule reads: counts, sample sheet, optional annotation and tx2gene."""
    files = {"counts": config["counts"], "samples": config["samples"]}
    if config.get("annotation"):
        files["annotation"] = config["annotation"]
    if config["tximport"]["tx2gene"]:
        files["tx2gene"] = config["tximport"]["tx2gene"]
    return files


def score_gene_sets():
    """The GMT files of the IFN scores: the shipped one, then the user's."""
    return [shipped(SHIPPED_GMT), *config["scores"]["gene_sets"]]


def enrichment_gene_sets():
    """The GMT files of the enrichment: the shipped one, then the user's."""
    return [shipped(SHIPPED_GMT), *config["enrichment"]["gene_sets"]]


def marker_table():
    """The cell-type marker table of the QC stage: the config's, or the shipped one."""
    return config["qc"]["markers"] or shipped(SHIPPED_MARKERS)


def clinical_inputs():
    """The clinical table, for the stages that read one (none when the config sets none)."""
    return {"clinical": config["clinical"]} if config.get("clinical") else {}


def de_inputs():
    """What the DE job reads besides the cohort: response calls for responder contrasts,
    the clinical table for clinical covariates, QC composition scores used as covariates.
    """
    files = {}
    if uses_responses(config):
        files["responses"] = "results/clinical/response.tsv"
    if clinical_covariates(config):
        files.update(clinical_inputs())
    if composition_covariates(config):
        files["composition"] = "results/qc/composition.tsv"
    return files


def heavy_threads():
    """Threads of the rules that parallelise: all of --cores (Snakemake also caps them at
    --max-threads); without --cores (a cluster), the profile's set-threads decides."""
    try:
        return max(int(workflow.cores), 1)
    except WorkflowError:
        return 1


def memory_for_inputs(base_mb, per_input_mb):
    """Memory (MB) that grows with the size of a rule's inputs, so large cohorts need no edits."""

    def mem_mb(wildcards, input):
        return int(base_mb + per_input_mb * input.size_mb)

    return mem_mb


def runtime_for_inputs(base_min, per_input_mb_min):
    """Wall time (minutes) that grows with the size of a rule's inputs, like memory_for_inputs.

    Calibrated on the demo cohort (87 samples x 15,000 genes, cohort.h5ad 22 MB): in the
    benchmark files of `snakemake --cores 2` on a loaded 2-core machine,
    differential_expression took 265 s and normalize 62 s; the factors leave several-fold
    headroom so a slow node does not hit the limit.
    """

    def runtime(wildcards, input):
        return int(base_min + per_input_mb_min * input.size_mb)

    return runtime
