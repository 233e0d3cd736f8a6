from ifnsig.stages import qc, run_script

run_script(
    snakemake,
    qc,
    config=snakemake.config,
    counts_h5ad=snakemake.input.counts,
    cohort_h5ad=snakemake.input.cohort,
    markers_tsv=snakemake.input.markers,
    outputs=dict(snakemake.output.items()),
    threads=snakemake.threads,
)
