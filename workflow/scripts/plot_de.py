import workflow_package  # noqa: F401  (this workflow's ifnsig first on sys.path)

from ifnsig.stages import plot_de, run_script

run_script(snakemake, plot_de)
