rule score_ifn:
    input:
        "results/data/cohort.h5ad",
    output:
        scores=report(
            score_outputs()["scores"],
            caption="../report/ifn_scores.rst",
            category="IFN scores",
            labels={"table": "IFN scores"},
        ),
        coverage=report(
            score_outputs()["coverage"],
            caption="../report/geneset_coverage.rst",
            category="IFN scores",
            labels={"table": "gene-set coverage"},
        ),
        obs=report(
            score_outputs()["obs"],
            caption="../report/ifn_obs.rst",
            category="IFN scores",
            labels={"table": "scores per sample (AnnData obs)"},
        ),
        agreement=report(
            score_outputs()["agreement"],
            caption="../report/method_agreement.rst",
            category="IFN scores",
            labels={"table": "method agreement"},
        ),
        type_contrast=report(
            score_outputs()["type_contrast"],
            caption="../report/ifn_type_contrast.rst",
            category="IFN scores",
            labels={"table": "type I vs IFN-gamma-biased"},
        ),
        over_time=report(
            score_outputs()["over_time"],
            caption="../report/ifn_scores_over_time.rst",
            category="IFN scores",
            labels={"figure": "score over time"},
        ),
        heatmap=report(
            score_outputs()["heatmap"],
            caption="../report/ifn_heatmap.rst",
            category="IFN scores",
            labels={"figure": "signature genes heatmap"},
        ),
        distributions=report(
            score_outputs()["distributions"],
            caption="../report/ifn_distributions.rst",
            category="IFN scores",
            labels={"figure": "control vs patient distributions"},
        ),
        type1_vs_type2=report(
            score_outputs()["type1_vs_type2"],
            caption="../report/ifn_type1_vs_type2.rst",
            category="IFN scores",
            labels={"figure": "type I vs IFN-gamma-biased"},
        ),
    log:
        "logs/scores/score_ifn.log",
    benchmark:
        "benchmarks/out/score_ifn.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        mem_mb=memory_for_inputs(1000, 10),
        runtime=runtime_for_inputs(10, 0.2),
    script:
        "../scripts/score_ifn.py"
