import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import differential_expression, run_script

run_script(snakemake, differential_expression)
