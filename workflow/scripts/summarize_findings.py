import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import run_script, summarize_findings

run_script(snakemake, summarize_findings)
