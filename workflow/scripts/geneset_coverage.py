import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import geneset_coverage, run_script

run_script(snakemake, geneset_coverage)
