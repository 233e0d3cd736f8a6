from ifnsig.stages import plot_de, run_script

run_script(
    snakemake,
    plot_de,
    config=snakemake.config,
    de_tsv=snakemake.input[0],
    volcano_png=snakemake.output[0],
)
