rule differential_expression:
    """Paired DE with pydeseq2 as DESeq2 computes it: one fit per design, tables per contrast."""
    input:
        **de_inputs(),
        normalized=rules.normalize.output.normalized,
    output:
        **{
            name: report(
                f"results/de/{name}.tsv",
                caption="../report/de_table.rst",
                category="Differential expression",
                labels={"contrast": name, "table": "DE results"},
            )
            for name in TABLES
        },
        **{
            f"{name}.samples": report(
                f"results/de/{name}.samples.tsv",
                caption="../report/de_samples.rst",
                category="Differential expression",
                labels={"contrast": name, "table": "samples fitted"},
            )
            for name in TABLES
        },
    log:
        "logs/de/differential_expression.log",
    benchmark:
        "benchmarks/out/differential_expression.tsv"
    conda:
        "../../envs/de.yaml"
    threads: heavy_threads()
    resources:
        mem_mb=memory_for_inputs(2000, 40),
        runtime=runtime_for_inputs(10, 0.5),
    params:
        settings=settings("differential_expression"),
    script:
        "../scripts/differential_expression.py"


rule plot_de:
    """Volcano, MA plot, p-value histogram and top-gene heatmap of one contrast."""
    input:
        de="results/de/{contrast}.tsv",
        samples="results/de/{contrast}.samples.tsv",
        normalized=rules.normalize.output.normalized,
        gene_sets=relative(score_gene_set_files(config)),
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
    params:
        settings=settings("plot_de"),
    script:
        "../scripts/plot_de.py"
