rule differential_expression:
    input:
        "results/data/cohort.h5ad",
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


rule plot_volcano:
    input:
        "results/de/{contrast}.tsv",
    output:
        report(
            "results/plots/volcano_{contrast}.png",
            caption="../report/volcano.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "volcano"},
        ),
    log:
        "logs/de/plot_volcano_{contrast}.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/plot_volcano.py"
