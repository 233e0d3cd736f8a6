from ifnsig.stages import run_script, score_ifn

run_script(
    snakemake,
    score_ifn,
    config=snakemake.config,
    input_h5ad=snakemake.input[0],
    outputs=dict(snakemake.output.items()),
    threads=snakemake.threads,
)
