from ifnsig.stages import export_matrices, run_script

run_script(
    snakemake,
    export_matrices,
    input_h5ad=snakemake.input[0],
    normalized_tsv=snakemake.output.normalized,
    vst_tsv=snakemake.output.vst,
)
