rule call_responses:
    """Clinical changes from baseline and the response calls, each with the values behind it."""
    input:
        **clinical_inputs(),
        samples=rules.build_anndata.output.samples,
    output:
        **computed(
            "call_responses",
            changes=report(
                "results/clinical/changes.tsv",
                caption="../report/changes.rst",
                category="Clinical linkage",
                labels={"table": "clinical changes"},
            ),
            response=report(
                "results/clinical/response.tsv",
                caption="../report/response.rst",
                category="Clinical linkage",
                labels={"table": "response calls"},
            ),
        ),
    log:
        "logs/clinical/call_responses.log",
    benchmark:
        "benchmarks/out/call_responses.tsv"
    conda:
        "../../envs/clinical.yaml"
    params:
        settings=settings("call_responses"),
    script:
        "../scripts/call_responses.py"


rule clinical_linkage:
    """Score changes and their links to the clinical course, response calls and groups."""
    input:
        **clinical_results(),
        scores=rules.score_ifn.output.scores,
        samples=rules.build_anndata.output.samples,
    output:
        **computed(
            "clinical_linkage",
            score_changes=report(
                "results/clinical/score_changes.tsv",
                caption="../report/score_changes.rst",
                category="Clinical linkage",
                labels={"table": "score changes"},
            ),
            paired_tests=report(
                "results/clinical/paired_tests.tsv",
                caption="../report/paired_tests.rst",
                category="Clinical linkage",
                labels={"table": "paired tests"},
            ),
            correlations=report(
                "results/clinical/correlations.tsv",
                caption="../report/correlations.rst",
                category="Clinical linkage",
                labels={"table": "change correlations"},
            ),
            baseline_prediction=report(
                "results/clinical/baseline_prediction.tsv",
                caption="../report/baseline_prediction.rst",
                category="Clinical linkage",
                labels={"table": "score vs response"},
            ),
            mixed_models=report(
                "results/clinical/mixed_models.tsv",
                caption="../report/mixed_models.rst",
                category="Clinical linkage",
                labels={"table": "mixed models"},
            ),
            trajectory_within=report(
                "results/clinical/trajectory_within.tsv",
                caption="../report/trajectory_within.rst",
                category="Clinical linkage",
                labels={"table": "score change within groups"},
            ),
            trajectory_between=report(
                "results/clinical/trajectory_between.tsv",
                caption="../report/trajectory_between.rst",
                category="Clinical linkage",
                labels={"table": "score change between groups"},
            ),
            trajectory_models=report(
                "results/clinical/trajectory_models.tsv",
                caption="../report/trajectory_models.rst",
                category="Clinical linkage",
                labels={"table": "timepoint x group models"},
            ),
            normalisation=report(
                "results/clinical/normalisation.tsv",
                caption="../report/normalisation.rst",
                category="Clinical linkage",
                labels={"table": "time to normalisation"},
            ),
            normalisation_tests=report(
                "results/clinical/normalisation_tests.tsv",
                caption="../report/normalisation_tests.rst",
                category="Clinical linkage",
                labels={"table": "normalisation by group"},
            ),
            change_scatter=report(
                "results/plots/clinical/change_vs_change.png",
                caption="../report/change_vs_change.rst",
                category="Clinical linkage",
                labels={"figure": "change vs change"},
            ),
            trajectories=report(
                "results/plots/clinical/trajectories.png",
                caption="../report/clinical_trajectories.rst",
                category="Clinical linkage",
                labels={"figure": "score and measures over time"},
            ),
            trajectories_by_group=report(
                "results/plots/clinical/trajectories_by_group.png",
                caption="../report/trajectories_by_group.rst",
                category="Clinical linkage",
                labels={"figure": "score over time by group"},
            ),
            roc=report(
                "results/plots/clinical/baseline_score_roc.png",
                caption="../report/response_roc.rst",
                category="Clinical linkage",
                labels={"figure": "ROC of baseline score"},
            ),
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
    params:
        settings=settings("clinical_linkage"),
    script:
        "../scripts/clinical_linkage.py"
