rule annotate_cohort:
    """The cohort AnnData for scanpy and R: every layer, IFN scores and QC in obs."""
    input:
        normalized=rules.normalize.output.normalized,
        scores=rules.score_ifn.output.scores,
        qc=rules.quality_control.output.h5ad,
    output:
        cohort="results/data/cohort.h5ad",
    log:
        "logs/data/annotate_cohort.log",
    benchmark:
        "benchmarks/out/annotate_cohort.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=memory_for_inputs(1000, 4),
    params:
        settings=settings("annotate_cohort"),
    script:
        "../scripts/annotate_cohort.py"
