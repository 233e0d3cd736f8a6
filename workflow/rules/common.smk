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
from ifnsig.de.shards import shard_count, shard_memory_mb
from ifnsig.errors import InputError
from ifnsig.settings import (
    aliases_file,
    enrichment_gene_set_files,
    frozen_reference_files,
    marker_file,
    score_gene_set_files,
    sheet_files,
    size_factor_gene_files,
    stage_settings,
)
from ifnsig.validation import ConfigSources, check_inputs, read_sample_sheet

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

# Gene shards of the DE (de.shards): one job each, and one job for everything below 2.
DE_SHARDS = shard_count(
    config["de"]["shards"],
    (
        len(read_sample_sheet(config["samples"], config))
        if config["de"]["shards"] == "auto"
        else 0
    ),
)

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


def clinical_tables():
    """The clinical tables the findings page reads, those this cohort has."""
    tables = {}
    for rule, names in [
        (rules.clinical_linkage, FINDINGS_LINKAGE_TABLES),
        (rules.call_responses, ("response", "changes")),
    ]:
        for name in names:
            if name in rule.output.keys():
                tables[name] = getattr(rule.output, name)
    return tables


FINDINGS_LINKAGE_TABLES = (
    "paired_tests",
    "correlations",
    "mixed_models",
    "baseline_prediction",
    "score_changes",
)


def clinical_results():
    """The clinical stage's tables the linkage reads: the changes of the measures and the
    response calls, when the cohort has them."""
    outputs = rules.call_responses.output
    names = [name for name in ("changes", "response") if name in outputs.keys()]
    return {name: getattr(outputs, name) for name in names}


wildcard_constraints:
    contrast="|".join(map(re.escape, TABLES)) or "NO_CONTRAST",
    shard=r"\d+",


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


def score_inputs():
    """What score_ifn scores: the normalized cohort, or, with scores.frozen_reference, the
    raw counts and the files of the saved reference (normalized and scored against it).
    """
    frozen = frozen_reference_files(config)
    if frozen:
        return {"counts": rules.build_anndata.output.counts, **relative(frozen)}
    return {"normalized": rules.normalize.output.normalized}


def module_outputs():
    """The module tables of score_ifn, written when scores.modules names modules."""
    if not config["scores"]["modules"]:
        return {}
    return {
        "module_activity": report(
            "results/scores/module_activity.tsv",
            caption="../report/module_activity.rst",
            category="IFN scores",
            labels={"table": "module activity"},
        ),
        "active_modules": report(
            "results/scores/active_modules.tsv",
            caption="../report/active_modules.rst",
            category="IFN scores",
            labels={"table": "active modules"},
        ),
    }


def clinical_inputs():
    """The clinical table, for the stages that read one (none when the config sets none)."""
    return {"clinical": relative(config["clinical"])} if config.get("clinical") else {}


def qc_marker_input():
    """The QC stage's cell-type marker table: the config's, or the shipped blood panel for
    blood; none for another tissue without a table of its own."""
    markers = marker_file(config)
    return {"markers": relative(markers)} if markers else {}


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


def size_factor_inputs():
    """What the DE's size factors read besides the cohort (de.size_factor_genes): the
    scored signatures' GMT files and the alias table, or the gene list and the alias
    table; nothing for all."""
    return relative(size_factor_gene_files(config))


def de_shard_inputs():
    """The sharded DE's results the gather reads (nothing when the DE is one job)."""
    if DE_SHARDS < 2:
        return {}
    return {
        "size_factors": "results/de/shards/size_factors.pkl",
        "tests": expand("results/de/shards/tests.{shard}.pkl", shard=range(DE_SHARDS)),
    }


def shard_settings(stage):
    """A shard job's settings: the stage's config keys and which gene shard it computes."""

    def picked(wildcards):
        return {
            **settings(stage),
            "shard": {"index": int(wildcards.shard), "count": DE_SHARDS},
        }

    return picked


def memory_per_shard(base_mb):
    """Memory (MB) of a shard job (or of the gather, which holds one shard's genes at a
    time): ifnsig.de.shards.shard_memory_mb, from the cohort's samples and its share of the
    genes."""

    def mem_mb(wildcards, input):
        return shard_memory_mb(input.filtered, DE_SHARDS, base_mb)

    return mem_mb


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


def single_cell_input_mb(input):
    """MB of a rule's inputs: (the single-cell .h5ad, everything else); (0, all) for bulk."""
    if not config["h5ad"]["single_cell"]:
        return 0.0, input.size_mb
    cells_mb = os.path.getsize(input.counts) / 2**20
    return cells_mb, input.size_mb - cells_mb


def memory_for_count_input(base_mb, per_input_mb, per_cell_file_mb):
    """memory_for_inputs, with a single-cell .h5ad counted per_cell_file_mb per MB: it is
    read in blocks of cells (ifnsig.formats.pseudobulk), so only its obs table, one block
    and the samples x genes sums are in memory, not the whole matrix (0.76 GB at 1,000,000
    cells, a 4.6 GB file: benchmarks/bench_pseudobulk.py)."""

    def mem_mb(wildcards, input):
        cells_mb, others_mb = single_cell_input_mb(input)
        return int(base_mb + per_input_mb * others_mb + per_cell_file_mb * cells_mb)

    return mem_mb


def runtime_for_count_input(base_min, per_input_mb_min, per_cell_file_mb_min):
    """runtime_for_inputs, with a single-cell .h5ad counted per_cell_file_mb_min per MB."""

    def runtime(wildcards, input):
        cells_mb, others_mb = single_cell_input_mb(input)
        return int(
            base_min + per_input_mb_min * others_mb + per_cell_file_mb_min * cells_mb
        )

    return runtime


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


# The report's first category (the report lists categories alphabetically).
FINDINGS_CATEGORY = "At a glance: findings"


def findings_inputs():
    """What the findings page reads besides the fixed tables: each contrast's DE and
    prerank tables, and every result table for its viewer (``table:<path>``; the large
    normalized-count and VST matrices stay files outside the report)."""
    files = {}
    for name in TABLES:
        files[f"de:{name}"] = f"results/de/{name}.tsv"
        files[f"prerank:{name}"] = f"results/enrichment/{name}.prerank.tsv"
        files[f"sets:{name}"] = f"results/enrichment/{name}.set_tests.tsv"
    producers = [
        rules.build_anndata,
        rules.quality_control,
        rules.geneset_coverage,
        rules.score_ifn,
        rules.differential_expression,
        rules.call_responses,
        rules.clinical_linkage,
    ]
    paths = [path for rule in producers for path in rule.output]
    paths += expand(rules.enrichment.output, contrast=TABLES)
    for path in paths:
        if path.endswith(".tsv") and "_mqc." not in path:
            files[f"table:{path}"] = path
    return files
