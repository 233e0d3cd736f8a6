# The shipped demo cohort as ifnsig reads it, for the R DESeq2 references of tests/test_lrt.py.
# Sourced by the demo_*_deseq2.R scripts, run from the repository root. Counts:
# resources/demo/counts.tsv.gz, genes kept with >= 10 reads in >= 3 of all 87 samples
# (config.yaml's filtering.min_count and min_samples, over the whole cohort as the workflow's
# normalize rule does). The CMAS_gain_3 call at month6 is computed here from
# config/clinical.tsv as ifnsig's improvement definition does (CMAS at month6 minus CMAS at
# baseline >= 3); each script writes the calls it used beside its table, and the Python
# test checks them against ifnsig's.
suppressMessages(library(DESeq2))

demo_inputs <- function() {
  cts <- as.matrix(read.delim(gzfile("resources/demo/counts.tsv.gz"), row.names = 1,
                              check.names = FALSE))
  sheet <- read.delim("config/samples.tsv", stringsAsFactors = FALSE)
  rownames(sheet) <- sheet$sample
  cts <- cts[rowSums(cts >= 10) >= 3, sheet$sample]
  clinical <- read.delim("config/clinical.tsv", stringsAsFactors = FALSE)
  at <- function(tp) clinical[clinical$timepoint == tp, c("subject", "CMAS")]
  gain <- merge(at("baseline"), at("month6"), by = "subject", suffixes = c("_baseline", "_month6"))
  gain$responder <- gain$CMAS_month6 - gain$CMAS_baseline >= 3
  sheet$response <- ifelse(gain$responder[match(sheet$subject, gain$subject)],
                           "responder", "non_responder")
  list(counts = cts, samples = sheet, calls = gain[, c("subject", "responder")])
}

# The demo's paired fit as a DESeqDataSet: the 25 patients' 75 samples, ~ subject + timepoint,
# baseline the reference level.
demo_paired_patients <- function(demo) {
  cd <- demo$samples[demo$samples$group == "patient", ]
  cd$subject <- factor(cd$subject)
  cd$timepoint <- relevel(factor(cd$timepoint), "baseline")
  DESeqDataSetFromMatrix(demo$counts[, rownames(cd)], cd, ~ subject + timepoint)
}

# One results() table in ifnsig's column order, tagged with the name of its ifnsig table.
as_table <- function(res, table) {
  data.frame(table = table, gene_id = rownames(res), baseMean = res$baseMean,
             log2FoldChange = res$log2FoldChange, lfcSE = res$lfcSE, stat = res$stat,
             pvalue = res$pvalue, padj = res$padj)
}

write_tables <- function(tables, path) {
  write.table(do.call(rbind, tables), gzfile(path), sep = "\t", quote = FALSE, row.names = FALSE)
}
