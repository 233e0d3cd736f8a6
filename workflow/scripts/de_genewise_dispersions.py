import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import de_genewise_dispersions, run_script

run_script(snakemake, de_genewise_dispersions)
