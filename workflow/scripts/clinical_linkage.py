from ifnsig.stages import clinical_linkage, run_script

run_script(
    snakemake,
    clinical_linkage,
    config=snakemake.config,
    scores_tsv=snakemake.input.scores,
    outputs=dict(snakemake.output.items()),
)
