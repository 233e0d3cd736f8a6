import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import run_script, score_ifn

run_script(snakemake, score_ifn)
