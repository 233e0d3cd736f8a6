rule differential_expression:
    """Paired DE with pydeseq2 as DESeq2 computes it: one fit per design, tables per contrast."""
    input:
        **de_inputs(),
        **de_shard_inputs(),
        **(size_factor_inputs() if DE_SHARDS < 2 else {}),
        filtered=rules.filter_genes.output.filtered,
    output:
        # Viewable in the report on the findings page (byte for byte, compressed): a
        # second copy as report items would double the report's size.
        **{name: f"results/de/{name}.tsv" for name in TABLES},
        **{
            f"{name}.samples": report(
                f"results/de/{name}.samples.tsv",
                caption="../report/de_samples.rst",
                category="Differential expression",
                labels={"contrast": name, "table": "samples fitted"},
            )
            for name in TABLES
        },
        design_checks=report(
            "results/de/design_checks.tsv",
            caption="../report/design_checks.rst",
            category="Differential expression",
            labels={"table": "design checks"},
        ),
    log:
        "logs/de/differential_expression.log",
    benchmark:
        "benchmarks/out/differential_expression.tsv"
    conda:
        "../../envs/de.yaml"
    threads: heavy_threads()
    resources:
        # The filtered counts take 2 to 3 bytes a value stored; one job's fit held 0.77 GB
        # for the demo's 1.3 million values and 1.13 GB for 1,000 x 2,000 samples x genes.
        mem_mb=(
            memory_for_inputs(2000, 200) if DE_SHARDS < 2 else memory_per_shard(1000)
        ),
        runtime=runtime_for_inputs(10, 0.5),
    params:
        settings=settings("differential_expression"),
    script:
        "../scripts/differential_expression.py"


rule plot_de:
    """Volcano, MA plot, p-value histogram and top-gene heatmap of one contrast."""
    input:
        de="results/de/{contrast}.tsv",
        samples="results/de/{contrast}.samples.tsv",
        normalized=rules.normalize.output.normalized,
        gene_sets=relative(score_gene_set_files(config)),
    output:
        volcano=report(
            "results/plots/de/{contrast}.volcano.png",
            caption="../report/volcano.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "volcano"},
        ),
        ma=report(
            "results/plots/de/{contrast}.ma.png",
            caption="../report/ma.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "MA"},
        ),
        pvalues=report(
            "results/plots/de/{contrast}.pvalues.png",
            caption="../report/pvalue_histogram.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "p-value histogram"},
        ),
        heatmap=report(
            "results/plots/de/{contrast}.heatmap.png",
            caption="../report/top_gene_heatmap.rst",
            category="Differential expression",
            labels={"contrast": "{contrast}", "figure": "top genes"},
        ),
    log:
        "logs/de/plot_de_{contrast}.log",
    benchmark:
        "benchmarks/out/plot_de_{contrast}.tsv"
    conda:
        "../../envs/de.yaml"
    params:
        settings=settings("plot_de"),
    script:
        "../scripts/plot_de.py"


# de.shards: the DE split by genes, DESeq2's parallel mode as jobs (ifnsig.de.shards); the
# differential_expression rule above then gathers the shards into the same tables.
if DE_SHARDS > 1:

    rule de_size_factors:
        """Median-of-ratios size factors of every fit, the cohort read in blocks."""
        input:
            **de_inputs(),
            **size_factor_inputs(),
            filtered=rules.filter_genes.output.filtered,
        output:
            size_factors="results/de/shards/size_factors.pkl",
        log:
            "logs/de/de_size_factors.log",
        benchmark:
            "benchmarks/out/de_size_factors.tsv"
        conda:
            "../../envs/de.yaml"
        resources:
            mem_mb=1000,
        params:
            settings=settings("de_size_factors"),
        script:
            "../scripts/de_size_factors.py"

    rule de_genewise_dispersions:
        """Gene-wise dispersions of one gene shard, and the IRLS means they start from."""
        input:
            **de_inputs(),
            filtered=rules.filter_genes.output.filtered,
            size_factors="results/de/shards/size_factors.pkl",
        output:
            genewise="results/de/shards/genewise.{shard}.pkl",
        log:
            "logs/de/de_genewise_dispersions.{shard}.log",
        benchmark:
            "benchmarks/out/de_genewise_dispersions.{shard}.tsv"
        conda:
            "../../envs/de.yaml"
        threads: heavy_threads()
        resources:
            mem_mb=memory_per_shard(1000),
            runtime=runtime_for_inputs(10, 0.5),
        params:
            settings=shard_settings("de_genewise_dispersions"),
        script:
            "../scripts/de_genewise_dispersions.py"

    rule de_dispersion_prior:
        """Dispersion trend and prior variance of every fit, over all genes."""
        input:
            **de_inputs(),
            filtered=rules.filter_genes.output.filtered,
            genewise=expand(
                "results/de/shards/genewise.{shard}.pkl", shard=range(DE_SHARDS)
            ),
        output:
            prior="results/de/shards/prior.pkl",
        log:
            "logs/de/de_dispersion_prior.log",
        benchmark:
            "benchmarks/out/de_dispersion_prior.tsv"
        conda:
            "../../envs/de.yaml"
        resources:
            # Every shard's gene-wise dispersions (the means stay unread): a few per gene.
            mem_mb=1000,
        params:
            settings=settings("de_dispersion_prior"),
        script:
            "../scripts/de_dispersion_prior.py"

    rule de_shard_tests:
        """MAP dispersions, fits, Cook's refits and the tests of one gene shard."""
        input:
            **de_inputs(),
            filtered=rules.filter_genes.output.filtered,
            size_factors="results/de/shards/size_factors.pkl",
            genewise="results/de/shards/genewise.{shard}.pkl",
            prior="results/de/shards/prior.pkl",
        output:
            tests="results/de/shards/tests.{shard}.pkl",
        log:
            "logs/de/de_shard_tests.{shard}.log",
        benchmark:
            "benchmarks/out/de_shard_tests.{shard}.tsv"
        conda:
            "../../envs/de.yaml"
        threads: heavy_threads()
        resources:
            mem_mb=memory_per_shard(1000),
            runtime=runtime_for_inputs(10, 0.5),
        params:
            settings=shard_settings("de_shard_tests"),
        script:
            "../scripts/de_shard_tests.py"
