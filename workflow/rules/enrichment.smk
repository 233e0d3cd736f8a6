rule enrichment:
    """Set tests on the samples, prerank GSEA on the Wald statistic, over-representation."""
    input:
        de="results/de/{contrast}.tsv",
        samples="results/de/{contrast}.samples.tsv",
        normalized=rules.normalize.output.normalized,
        gene_sets=relative(enrichment_gene_set_files(config)),
        aliases=relative(aliases_file()),
    output:
        set_tests=report(
            "results/enrichment/{contrast}.set_tests.tsv",
            caption="../report/set_tests.rst",
            category="Enrichment",
            labels={"contrast": "{contrast}", "table": "set tests (inference)"},
        ),
        prerank=report(
            "results/enrichment/{contrast}.prerank.tsv",
            caption="../report/prerank.rst",
            category="Enrichment",
            labels={"contrast": "{contrast}", "table": "prerank GSEA"},
        ),
        ora=report(
            "results/enrichment/{contrast}.ora.tsv",
            caption="../report/ora.rst",
            category="Enrichment",
            labels={"contrast": "{contrast}", "table": "over-representation"},
        ),
        dotplot=report(
            "results/plots/enrichment/{contrast}.dotplot.png",
            caption="../report/enrichment_dotplot.rst",
            category="Enrichment",
            labels={"contrast": "{contrast}", "figure": "top gene sets"},
        ),
        running_scores=report(
            "results/plots/enrichment/{contrast}.ifn_running_scores.png",
            caption="../report/running_scores.rst",
            category="Enrichment",
            labels={"contrast": "{contrast}", "figure": "IFN running scores"},
        ),
    log:
        "logs/enrichment/{contrast}.log",
    benchmark:
        "benchmarks/out/enrichment_{contrast}.tsv"
    conda:
        "../../envs/enrichment.yaml"
    threads: 2
    resources:
        mem_mb=memory_for_inputs(1000, 10),
    params:
        settings=settings("enrichment"),
    script:
        "../scripts/enrichment.py"
