from ifnsig.stages import run_script, score_ifn

run_script(
    snakemake,
    score_ifn,
    config=snakemake.config,
    input_h5ad=snakemake.input[0],
    scores_tsv=snakemake.output.scores,
    coverage_tsv=snakemake.output.coverage,
    plot_png=snakemake.output.plot,
)
