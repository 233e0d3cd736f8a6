from ifnsig.stages import build_anndata, run_script

run_script(snakemake, build_anndata, config=snakemake.config, output=snakemake.output[0])
