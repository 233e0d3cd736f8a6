rule build_anndata:
    """Check every input (count values in full) and read the counts once into AnnData."""
    input:
        **relative(sheet_files(config)),
    output:
        counts="results/data/counts.h5ad",
        samples=report(
            "results/data/samples.tsv",
            caption="../report/samples.rst",
            category="Quality control",
            labels={"table": "samples analysed"},
        ),
    log:
        "logs/data/build_anndata.log",
    benchmark:
        "benchmarks/out/build_anndata.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=memory_for_count_input(1000, 20, 0.2),
        runtime=runtime_for_count_input(10, 1, 0.01),
    params:
        settings=settings("build_anndata"),
    script:
        "../scripts/build_anndata.py"


rule filter_genes:
    """Keep the genes with enough reads; their raw counts, what normalize and the DE read."""
    input:
        counts=rules.build_anndata.output.counts,
    output:
        filtered="results/data/filtered_counts.h5ad",
    log:
        "logs/data/filter_genes.log",
    benchmark:
        "benchmarks/out/filter_genes.tsv"
    conda:
        "../../envs/core.yaml"
    threads: heavy_threads()
    resources:
        # counts.h5ad read whole, and its kept genes copied: 0.21 GB for the demo's 4 MB.
        mem_mb=memory_for_inputs(1000, 20),
        runtime=runtime_for_inputs(10, 0.1),
    params:
        settings=settings("filter_genes"),
    script:
        "../scripts/filter_genes.py"


rule normalize:
    """DESeq2 size factors, VST and log-CPM layers of the filtered genes."""
    input:
        filtered=rules.filter_genes.output.filtered,
    output:
        normalized="results/data/normalized.h5ad",
    log:
        "logs/data/normalize.log",
    benchmark:
        "benchmarks/out/normalize.tsv"
    conda:
        "../../envs/core.yaml"
    threads: heavy_threads()
    resources:
        mem_mb=memory_for_inputs(1000, 30),
        runtime=runtime_for_inputs(10, 0.5),
    params:
        settings=settings("normalize"),
    script:
        "../scripts/normalize.py"


rule export_matrices:
    """Normalized counts and VST values as gene x sample tables."""
    input:
        normalized=rules.normalize.output.normalized,
    output:
        # Large matrices (genes x samples) stay files outside the report.
        normalized="results/de/normalized_counts.tsv",
        vst="results/de/vst.tsv",
    log:
        "logs/de/export_matrices.log",
    benchmark:
        "benchmarks/out/export_matrices.tsv"
    conda:
        "../../envs/core.yaml"
    params:
        settings=settings("export_matrices"),
    script:
        "../scripts/export_matrices.py"
