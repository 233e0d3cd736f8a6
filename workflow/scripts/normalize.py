from ifnsig.stages import normalize, run_script

run_script(
    snakemake,
    normalize,
    config=snakemake.config,
    input_h5ad=snakemake.input[0],
    output=snakemake.output[0],
    threads=snakemake.threads,
)
