import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import build_anndata, run_script

run_script(snakemake, build_anndata)
