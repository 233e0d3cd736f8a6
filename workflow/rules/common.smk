# Validation at parse time, the contrast plan, settings and input functions.
# The package lives beside the rules (workflow/ifnsig), so the workflow runs from a clone,
# or deployed as a module, without installing it; config_file.smk put it first on
# sys.path, ahead of any other installed ifnsig, and the scripts do the same
# (workflow/scripts/workflow_package.py).
import os
import re
import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from ifnsig.analyses import describe, not_computed
from ifnsig.comparisons import score_comparison
from ifnsig.de import (
    clinical_covariates,
    composition_covariates,
    de_tables,
    uses_responses,
)
from ifnsig.errors import InputError
from ifnsig.settings import (
    aliases_file,
    enrichment_gene_set_files,
    marker_file,
    score_gene_set_files,
    sheet_files,
    stage_settings,
)
from ifnsig.validation import ConfigSources, check_inputs

# Everything except the count values is checked here, before any job is scheduled; the
# first rule checks the counts in full before writing anything. Messages about a setting
# name the file (or --config) it came from.
try:
    SOURCES = ConfigSources.of_workflow(workflow, "config/config.yaml")
    DESIGN, _ = check_inputs(config, SOURCES)
except InputError as err:
    sys.exit(f"Input error: {err}")

# The DE tables (a contrast's own, and the within-group changes of a differential response).
TABLES = de_tables(config)

# Outputs this cohort does not allow (one timepoint, no clinical table, no response...):
# left out of the rules rather than written as tables without rows (ifnsig.analyses). One
# line per stage says so; the report's description lists them from config["not_computed"],
# which is filled here for the report only (the schema rejects it in a config file, and no
# stage receives it).
_COMPARISON = score_comparison(
    config["scores"]["compare"], config["groups"], DESIGN.samples
)
NOT_COMPUTED = not_computed(
    config, _COMPARISON if isinstance(_COMPARISON, str) else "", TABLES
)
config["not_computed"] = [
    describe(stage, missing) for stage, missing in NOT_COMPUTED.items()
]
for _line in config["not_computed"]:
    logger.info(_line)


def computed(stage, **outputs):
    """The outputs of ``stage`` that this cohort allows (ifnsig.analyses)."""
    missing = NOT_COMPUTED.get(stage, {})
    return {name: path for name, path in outputs.items() if name not in missing}


def clinical_results():
    """The clinical stage's tables the linkage reads: the changes of the measures and the
    response calls, when the cohort has them."""
    outputs = rules.call_responses.output
    names = [name for name in ("changes", "response") if name in outputs.keys()]
    return {name: getattr(outputs, name) for name in names}


wildcard_constraints:
    contrast="|".join(map(re.escape, TABLES)) or "NO_CONTRAST",


def settings(stage):
    """The config keys ``stage`` uses (ifnsig.settings), as the rule's params."""
    return stage_settings(config, stage)


def relative(paths):
    """Paths relative to the working directory (the workflow's own files included): a
    project copied or moved with its clone keeps its paths, and nothing absolute enters
    the DAG."""
    if isinstance(paths, dict):
        return {name: relative(path) for name, path in paths.items()}
    if isinstance(paths, list):
        return [relative(path) for path in paths]
    return os.path.relpath(paths) if os.path.isabs(paths) else paths


def clinical_inputs():
    """The clinical table, for the stages that read one (none when the config sets none)."""
    return {"clinical": relative(config["clinical"])} if config.get("clinical") else {}


def de_inputs():
    """What the DE job reads besides the cohort: response calls for responder contrasts,
    the clinical table for clinical covariates, QC composition scores used as covariates.
    """
    files = {}
    if uses_responses(config):
        files["responses"] = rules.call_responses.output.response
    if clinical_covariates(config):
        files.update(clinical_inputs())
    if composition_covariates(config):
        files["composition"] = rules.quality_control.output.composition
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
