from ifnsig.stages import enrich, run_script

run_script(
    snakemake,
    enrich,
    config=snakemake.config,
    de_tsv=snakemake.input[0],
    prerank_tsv=snakemake.output.prerank,
    ora_tsv=snakemake.output.ora,
    plot_png=snakemake.output.plot,
    threads=snakemake.threads,
)
