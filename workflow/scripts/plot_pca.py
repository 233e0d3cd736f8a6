from ifnsig.stages import plot_pca, run_script

run_script(snakemake, plot_pca, input_h5ad=snakemake.input[0], output=snakemake.output[0])
