rule geneset_coverage:
    """Match the scored signatures to the cohort's genes; a set with none of them fails here."""
    input:
        counts=rules.build_anndata.output.counts,
        gene_sets=relative(score_gene_set_files(config)),
        aliases=relative(aliases_file()),
    output:
        coverage=report(
            "results/scores/geneset_coverage.tsv",
            caption="../report/geneset_coverage.rst",
            category="IFN scores",
            labels={"table": "gene-set coverage"},
        ),
    log:
        "logs/scores/geneset_coverage.log",
    benchmark:
        "benchmarks/out/geneset_coverage.tsv"
    # A cheap check: scheduled before the heavy rules that could run beside it.
    priority: 10
    conda:
        "../../envs/core.yaml"
    params:
        settings=settings("geneset_coverage"),
    script:
        "../scripts/geneset_coverage.py"


rule score_ifn:
    """IFN scores per signature and method, positivity, agreement and type I vs II."""
    input:
        **score_inputs(),
        coverage=rules.geneset_coverage.output.coverage,
        gene_sets=relative(score_gene_set_files(config)),
        aliases=relative(aliases_file()),
    output:
        **module_outputs(),
        **computed(
            "score_ifn",
            scores=report(
                "results/scores/ifn_scores.tsv",
                caption="../report/ifn_scores.rst",
                category="IFN scores",
                labels={"table": "IFN scores"},
            ),
            obs=report(
                "results/scores/cohort_obs.tsv",
                caption="../report/ifn_obs.rst",
                category="IFN scores",
                labels={"table": "scores per sample (AnnData obs)"},
            ),
            agreement=report(
                "results/scores/method_agreement.tsv",
                caption="../report/method_agreement.rst",
                category="IFN scores",
                labels={"table": "method agreement"},
            ),
            group_comparison=report(
                "results/scores/group_comparison.tsv",
                caption="../report/group_comparison.rst",
                category="IFN scores",
                labels={"table": "score between groups"},
            ),
            type_contrast=report(
                "results/scores/type1_vs_type2.tsv",
                caption="../report/ifn_type_contrast.rst",
                category="IFN scores",
                labels={"table": "type I vs IFN-gamma-biased"},
            ),
            over_time=report(
                "results/plots/scores/ifn_scores_over_time.png",
                caption="../report/ifn_scores_over_time.rst",
                category="IFN scores",
                labels={"figure": "score over time"},
            ),
            heatmap=report(
                "results/plots/scores/signature_heatmap.png",
                caption="../report/ifn_heatmap.rst",
                category="IFN scores",
                labels={"figure": "signature genes heatmap"},
            ),
            distributions=report(
                "results/plots/scores/score_distributions.png",
                caption="../report/ifn_distributions.rst",
                category="IFN scores",
                labels={"figure": "control vs patient distributions"},
            ),
            type1_vs_type2=report(
                "results/plots/scores/type1_vs_type2.png",
                caption="../report/ifn_type1_vs_type2.rst",
                category="IFN scores",
                labels={"figure": "type I vs IFN-gamma-biased"},
            ),
            mixture_fits=report(
                "results/scores/mixture_fits.tsv",
                caption="../report/mixture_fits.rst",
                category="IFN scores",
                labels={"table": "mixture fits"},
            ),
            reference_meta=report(
                "results/scores/reference/reference.json",
                caption="../report/score_reference.rst",
                category="IFN scores",
                labels={"table": "saved reference: reference.json"},
            ),
            # One row per gene: viewable in the report on the findings page (compressed);
            # as a report item it would take 1.8 MB of the demo's report.
            reference_genes="results/scores/reference/genes.tsv",
            reference_gene_sets=report(
                "results/scores/reference/gene_sets.tsv",
                caption="../report/score_reference.rst",
                category="IFN scores",
                labels={"table": "saved reference: gene_sets.tsv"},
            ),
            reference_cutoffs=report(
                "results/scores/reference/cutoffs.tsv",
                caption="../report/score_reference.rst",
                category="IFN scores",
                labels={"table": "saved reference: cutoffs.tsv"},
            ),
            reference_samples=report(
                "results/scores/reference/samples.tsv",
                caption="../report/score_reference.rst",
                category="IFN scores",
                labels={"table": "saved reference: samples.tsv"},
            ),
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
    params:
        settings=settings("score_ifn"),
    script:
        "../scripts/score_ifn.py"
