# R DESeq2 1.38.3 (Debian r-bioc-deseq2): size factors of the demo's paired fit (the 75
# patient samples) from control genes, estimateSizeFactors(dds, controlGenes = idx), for
# de.size_factor_genes. Two sets: every gene but those of config.yaml's scored signatures
# (RICE2013_6, NIH28, FENG2006_5, IFNG_BIASED, exact symbols of the shipped GMT:
# exclude_signatures) and every seventh gene (a gene list). Writes
# tests/data/demo_control_genes_deseq2_1.38.3.tsv (columns control, sample, size_factor,
# n_control). Run from the repository root: Rscript tests/data/demo_control_genes_deseq2.R
source("tests/data/demo_inputs.R")
demo <- demo_inputs()
dds <- demo_paired_patients(demo)
gmt <- strsplit(readLines("resources/genesets/ifn_signatures.gmt"), "\t")
names(gmt) <- vapply(gmt, `[`, "", 1)
scored <- c("RICE2013_6", "NIH28", "FENG2006_5", "IFNG_BIASED")
signature_genes <- unique(unlist(lapply(gmt[scored], function(line) line[-(1:2)])))
controls <- list(
  exclude_signatures = !(rownames(dds) %in% signature_genes),
  every_seventh = seq(1, nrow(dds), by = 7)
)
tables <- lapply(names(controls), function(name) {
  idx <- controls[[name]]
  sf <- sizeFactors(estimateSizeFactors(dds, controlGenes = idx))
  n <- if (is.logical(idx)) sum(idx) else length(idx)
  data.frame(control = name, sample = names(sf), size_factor = sprintf("%.17g", sf),
             n_control = n)
})
write.table(do.call(rbind, tables), "tests/data/demo_control_genes_deseq2_1.38.3.tsv",
            sep = "\t", quote = FALSE, row.names = FALSE)
