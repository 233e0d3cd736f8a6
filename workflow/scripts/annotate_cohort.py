import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import annotate_cohort, run_script

run_script(snakemake, annotate_cohort)
