# R DESeq2 1.38.3 (Debian r-bioc-deseq2) on the shipped demo's unpaired contrast of CMAS
# responders (CMAS_gain_3 at month6) vs non-responders at baseline: 19 vs 6 patients, so
# DESeq2 replaces Cook's outliers (>= 7 replicates) and refits. Writes
# demo_responders_deseq2_1.38.3.tsv.gz (gene_id, log2FoldChange, stat, padj).
# Inputs, written in Python from the demo run's results/data/cohort.h5ad with
#   fit = de.plan_fits(samples, config, clinical)[0] for that contrast:
#   counts.tsv = adata[fit.samples].layers["counts"] (genes x samples),
#   design.tsv = fit.metadata with its column renamed to "response".
suppressMessages(library(DESeq2))
cts <- as.matrix(read.delim("counts.tsv", row.names = 1, check.names = FALSE))
cd <- read.delim("design.tsv", row.names = 1)
cd$response <- relevel(factor(cd$response), "non_responder")
dds <- DESeqDataSetFromMatrix(cts[, rownames(cd)], cd, ~ response)
dds <- DESeq(dds, quiet = TRUE)
res <- results(dds, contrast = c("response", "responder", "non_responder"))
write.table(
  data.frame(gene_id = rownames(res), log2FoldChange = res$log2FoldChange, stat = res$stat,
             padj = res$padj),
  gzfile("demo_responders_deseq2_1.38.3.tsv.gz"), sep = "\t", quote = FALSE, row.names = FALSE
)
