from ifnsig.stages import differential_expression, run_script

run_script(
    snakemake,
    differential_expression,
    config=snakemake.config,
    input_h5ad=snakemake.input[0],
    outputs=dict(snakemake.output.items()),
    threads=snakemake.threads,
    composition_tsv=snakemake.input.get("composition"),
)
