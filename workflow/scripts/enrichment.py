from ifnsig.stages import enrich, run_script

run_script(
    snakemake,
    enrich,
    config=snakemake.config,
    de_tsv=snakemake.input[0],
    outputs=dict(snakemake.output.items()),
    threads=snakemake.threads,
)
