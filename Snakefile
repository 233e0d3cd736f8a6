# ifnsig: the type I interferon signature in blood RNA-seq before and after JAK
# inhibition, and its link to clinical response. See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/scores.smk"
include: "workflow/rules/de.smk"
include: "workflow/rules/enrichment.smk"
include: "workflow/rules/clinical.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
