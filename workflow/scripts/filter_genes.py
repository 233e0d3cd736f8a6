import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import filter_genes, run_script

run_script(snakemake, filter_genes)
