rule quality_control:
    """Library metrics, sex and pairing checks, outliers, cell-type scores; MultiQC files."""
    input:
        **qc_marker_input(),
        counts=rules.build_anndata.output.counts,
        normalized=rules.normalize.output.normalized,
    output:
        **computed(
            "quality_control",
            metrics=report(
                "results/qc/qc_metrics.tsv",
                caption="../report/qc_metrics.rst",
                category="Quality control",
                labels={"table": "per-sample QC"},
            ),
            flags=report(
                "results/qc/qc_flags.tsv",
                caption="../report/qc_flags.rst",
                category="Quality control",
                labels={"table": "QC flags"},
            ),
            composition=report(
                "results/qc/composition.tsv",
                caption="../report/composition.rst",
                category="Quality control",
                labels={"table": "cell-type scores"},
            ),
            composition_changes=report(
                "results/qc/composition_changes.tsv",
                caption="../report/composition_changes.rst",
                category="Quality control",
                labels={"table": "cell-type score changes"},
            ),
            composition_markers=report(
                "results/qc/composition_markers.tsv",
                caption="../report/composition_markers.rst",
                category="Quality control",
                labels={"table": "cell-type markers found"},
            ),
            h5ad="results/qc/qc.h5ad",
            multiqc_metrics="results/qc/qc_metrics_mqc.tsv",
            multiqc_flags="results/qc/qc_flags_mqc.yaml",
            multiqc_identity="results/qc/qc_identity_mqc.tsv",
            multiqc_composition="results/qc/qc_composition_mqc.tsv",
            pca=report(
                "results/plots/qc/pca.png",
                caption="../report/pca.rst",
                category="Quality control",
                labels={"figure": "PCA"},
            ),
            correlation=report(
                "results/plots/qc/sample_correlation.png",
                caption="../report/sample_correlation.rst",
                category="Quality control",
                labels={"figure": "sample correlation"},
            ),
            metric_bars=report(
                "results/plots/qc/metrics.png",
                caption="../report/qc_metric_bars.rst",
                category="Quality control",
                labels={"figure": "library metrics"},
            ),
            sex=report(
                "results/plots/qc/sex_check.png",
                caption="../report/sex_check.rst",
                category="Quality control",
                labels={"figure": "sex check"},
            ),
            composition_plot=report(
                "results/plots/qc/composition_over_time.png",
                caption="../report/composition_over_time.rst",
                category="Quality control",
                labels={"figure": "cell-type scores over time"},
            ),
        ),
    log:
        "logs/qc/quality_control.log",
    benchmark:
        "benchmarks/out/quality_control.tsv"
    conda:
        "../../envs/core.yaml"
    threads: 2
    resources:
        # Measured: 1.3 GB peak for 1,000 samples x 20,000 genes (415 MB of inputs).
        mem_mb=memory_for_inputs(1000, 4),
        runtime=runtime_for_inputs(10, 0.05),
    params:
        settings=settings("quality_control"),
    script:
        "../scripts/quality_control.py"
