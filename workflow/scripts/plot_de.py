from ifnsig.stages import plot_de, run_script

run_script(
    snakemake,
    plot_de,
    config=snakemake.config,
    de_tsv=snakemake.input.de,
    input_h5ad=snakemake.input.cohort,
    contrast=snakemake.wildcards.contrast,
    outputs=dict(snakemake.output.items()),
    composition_tsv=snakemake.input.get("composition"),
)
