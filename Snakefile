# ifnsig: the type I interferon signature in blood RNA-seq before and after JAK
# inhibition, and its link to clinical response. See README.md.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The workflow's own folder (a clone, or a module deployed from elsewhere): its package,
# resources and schemas are found from here, never from the working directory.
WORKFLOW_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True))


# A YAML mistake in the config file is reported with its line before Snakemake reads it.
include: "workflow/rules/config_file.smk"


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/scores.smk"
include: "workflow/rules/clinical.smk"
include: "workflow/rules/de.smk"
include: "workflow/rules/enrichment.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/findings.smk"


rule all:
    """Every table and figure of every stage."""
    default_target: True
    input:
        rules.normalize.output,
        rules.export_matrices.output,
        rules.quality_control.output,
        rules.geneset_coverage.output,
        rules.score_ifn.output,
        rules.differential_expression.output,
        expand(rules.plot_de.output, contrast=TABLES),
        expand(rules.enrichment.output, contrast=TABLES),
        rules.call_responses.output,
        rules.clinical_linkage.output,
        rules.annotate_cohort.output,
        rules.summarize_findings.output,
