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
        plot=report(
            clinical_outputs()["plot"],
            caption="../report/change_vs_change.rst",
            category="Clinical linkage",
            labels={"figure": "change vs change"},
        ),
    log:
        "logs/clinical/clinical_linkage.log",
    benchmark:
        "benchmarks/out/clinical_linkage.tsv"
    conda:
        "../../envs/clinical.yaml"
    script:
        "../scripts/clinical_linkage.py"
