rule score_ifn:
    input:
        "results/data/cohort.h5ad",
    output:
        scores=report(
            "results/scores/ifn_scores.tsv",
            caption="../report/ifn_scores.rst",
            category="IFN scores",
            labels={"table": "IFN scores"},
        ),
        coverage=report(
            "results/scores/geneset_coverage.tsv",
            caption="../report/geneset_coverage.rst",
            category="IFN scores",
            labels={"table": "gene-set coverage"},
        ),
        plot=report(
            "results/plots/ifn_scores_over_time.png",
            caption="../report/ifn_scores_over_time.rst",
            category="IFN scores",
            labels={"figure": "score over time"},
        ),
    log:
        "logs/scores/score_ifn.log",
    benchmark:
        "benchmarks/out/score_ifn.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=memory_for_inputs(1000, 10),
        runtime=runtime_for_inputs(10, 0.2),
    script:
        "../scripts/score_ifn.py"
