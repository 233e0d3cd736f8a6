import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import export_matrices, run_script

run_script(snakemake, export_matrices)
