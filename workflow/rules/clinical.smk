rule clinical_linkage:
    input:
        **sheet_inputs(),
        scores="results/scores/ifn_scores.tsv",
    output:
        score_changes=report(
            clinical_outputs()["score_changes"],
            caption="../report/score_changes.rst",
            category="Clinical linkage",
            labels={"table": "score changes"},
        ),
        changes=report(
            clinical_outputs()["changes"],
            caption="../report/changes.rst",
            category="Clinical linkage",
            labels={"table": "clinical changes"},
        ),
        response=report(
            clinical_outputs()["response"],
            caption="../report/response.rst",
            category="Clinical linkage",
            labels={"table": "response calls"},
        ),
        paired_tests=report(
            clinical_outputs()["paired_tests"],
            caption="../report/paired_tests.rst",
            category="Clinical linkage",
            labels={"table": "paired tests"},
        ),
        correlations=report(
            clinical_outputs()["correlations"],
            caption="../report/correlations.rst",
            category="Clinical linkage",
            labels={"table": "change correlations"},
        ),
        baseline_prediction=report(
            clinical_outputs()["baseline_prediction"],
            caption="../report/baseline_prediction.rst",
            category="Clinical linkage",
            labels={"table": "score vs response"},
        ),
        mixed_models=report(
            clinical_outputs()["mixed_models"],
            caption="../report/mixed_models.rst",
            category="Clinical linkage",
            labels={"table": "mixed models"},
        ),
        change_scatter=report(
            clinical_outputs()["change_scatter"],
            caption="../report/change_vs_change.rst",
            category="Clinical linkage",
            labels={"figure": "change vs change"},
        ),
        trajectories=report(
            clinical_outputs()["trajectories"],
            caption="../report/clinical_trajectories.rst",
            category="Clinical linkage",
            labels={"figure": "score and measures over time"},
        ),
        roc=report(
            clinical_outputs()["roc"],
            caption="../report/response_roc.rst",
            category="Clinical linkage",
            labels={"figure": "ROC of baseline score"},
        ),
    log:
        "logs/clinical/clinical_linkage.log",
    benchmark:
        "benchmarks/out/clinical_linkage.tsv"
    conda:
        "../../envs/clinical.yaml"
    threads: 1
    resources:
        mem_mb=memory_for_inputs(1000, 2),
    script:
        "../scripts/clinical_linkage.py"
