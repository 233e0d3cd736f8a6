rule summarize_findings:
    """The report's first page: the findings read from the result tables, every table."""
    input:
        **findings_inputs(),
        **clinical_tables(),
        samples=rules.build_anndata.output.samples,
        scores=rules.score_ifn.output.scores,
        qc_flags=rules.quality_control.output.flags,
    output:
        findings=report(
            "results/findings/findings.html",
            caption="../report/findings.rst",
            category=FINDINGS_CATEGORY,
            labels={"page": "findings and every table"},
        ),
        numbers=report(
            "results/findings/run_numbers.tsv",
            caption="../report/run_numbers.rst",
            category=FINDINGS_CATEGORY,
            labels={"page": "the run's numbers"},
        ),
        patients=report(
            "results/plots/findings/patients.png",
            caption="../report/patients.rst",
            category=FINDINGS_CATEGORY,
            labels={"page": "each patient over time"},
        ),
    log:
        "logs/findings/summarize_findings.log",
    benchmark:
        "benchmarks/out/summarize_findings.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        mem_mb=memory_for_inputs(1000, 4),
    params:
        settings=settings("summarize_findings"),
    script:
        "../scripts/summarize_findings.py"
