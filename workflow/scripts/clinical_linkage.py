import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import clinical_linkage, run_script

run_script(snakemake, clinical_linkage)
