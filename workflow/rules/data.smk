rule build_anndata:
    input:
        **sheet_inputs(),
    output:
        "results/data/counts.h5ad",
    log:
        "logs/data/build_anndata.log",
    benchmark:
        "benchmarks/out/build_anndata.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=memory_for_inputs(1000, 20),
        runtime=runtime_for_inputs(10, 1),
    script:
        "../scripts/build_anndata.py"


rule normalize:
    input:
        "results/data/counts.h5ad",
    output:
        "results/data/cohort.h5ad",
    log:
        "logs/data/normalize.log",
    benchmark:
        "benchmarks/out/normalize.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=memory_for_inputs(1000, 30),
        runtime=runtime_for_inputs(10, 0.5),
    script:
        "../scripts/normalize.py"
