rule differential_expression:
    input:
        "results/data/cohort.h5ad",
        **de_extra_inputs(),
    output:
        **{
            name: report(
                f"results/de/{name}.tsv",
                caption="../report/de_table.rst",
                category="Differential expression",
                labels={"contrast": name, "table": "DE results"},
            )
            for name in CONTRASTS
        },
    log:
        "logs/de/differential_expression.log",
    benchmark:
        "benchmarks/out/differential_expression.tsv"
    conda:
        "../../envs/de.yaml"
    threads: 2
    resources:
        mem_mb=memory_for_inputs(2000, 40),
        runtime=runtime_for_inputs(10, 0.5),
    script:
        "../scripts/differential_expression.py"


rule plot_de:
    input:
        **de_extra_inputs(),
        de="results/de/{contrast}.tsv",
        cohort="results/data/cohort.h5ad",
    output:
        volcano=report(
            "results/plots/de/{contrast}.volcano.png",
            caption="../report/volcano.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "volcano"},
        ),
        ma=report(
            "results/plots/de/{contrast}.ma.png",
            caption="../report/ma.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "MA"},
        ),
        pvalues=report(
            "results/plots/de/{contrast}.pvalues.png",
            caption="../report/pvalue_histogram.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "p-value histogram"},
        ),
        heatmap=report(
            "results/plots/de/{contrast}.heatmap.png",
            caption="../report/top_gene_heatmap.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "top genes"},
        ),
    log:
        "logs/de/plot_de_{contrast}.log",
    conda:
        "../../envs/de.yaml"
    script:
        "../scripts/plot_de.py"


rule export_matrices:
    input:
        "results/data/cohort.h5ad",
    output:
        normalized=report(
            "results/de/normalized_counts.tsv",
            caption="../report/normalized_counts.rst",
            category="Differential expression",
            labels={"table": "normalized counts"},
        ),
        vst=report(
            "results/de/vst.tsv",
            caption="../report/vst.rst",
            category="Differential expression",
            labels={"table": "VST values"},
        ),
    log:
        "logs/de/export_matrices.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/export_matrices.py"
