import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import quality_control, run_script

run_script(snakemake, quality_control)
