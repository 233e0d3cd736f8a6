# R DESeq2 1.38.3 (Debian r-bioc-deseq2) on the shipped demo cohort's paired fit; writes
# demo_deseq2_1.38.3.tsv.gz's contents (gene_id, contrast, log2FoldChange, stat, padj).
# Inputs: the workflow's filtered counts and design of the fit, written in Python with
#   fit = de.plan_fits(samples, config)[0] on results/data/cohort.h5ad of the demo run:
#   counts.tsv = adata[fit.samples].layers["counts"] (genes x samples), design.tsv = fit.metadata
suppressMessages(library(DESeq2))
cts <- as.matrix(read.delim("counts.tsv", row.names = 1, check.names = FALSE))
cd <- read.delim("design.tsv", row.names = 1)
cd$subject <- factor(cd$subject)
cd$timepoint <- relevel(factor(cd$timepoint), "baseline")
dds <- DESeqDataSetFromMatrix(cts[, rownames(cd)], cd, ~ subject + timepoint)
dds <- DESeq(dds, quiet = TRUE)
tables <- lapply(c("month3", "month6"), function(tp) {
  res <- results(dds, contrast = c("timepoint", tp, "baseline"))
  data.frame(gene_id = rownames(res), contrast = paste0(tp, "_vs_baseline"),
             log2FoldChange = res$log2FoldChange, stat = res$stat, padj = res$padj)
})
write.table(do.call(rbind, tables), gzfile("demo_deseq2_1.38.3.tsv.gz"), sep = "\t",
            quote = FALSE, row.names = FALSE)
