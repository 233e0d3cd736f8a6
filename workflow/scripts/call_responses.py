import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import call_responses, run_script

run_script(snakemake, call_responses)
