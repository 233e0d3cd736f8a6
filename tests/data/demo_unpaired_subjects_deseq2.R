# R DESeq2 1.38.3 (Debian r-bioc-deseq2): the demo's paired fit (~ subject + timepoint) on the
# patients' samples without JDM01-JDM03 at baseline and JDM04-JDM05 at month3 and month6, and
# JDM06 at baseline and month3: three subjects lacking the reference and three with a single
# sample, all given to DESeq2 (ifnsig with de.keep_unpaired_subjects: true). 66 samples.
# Writes tests/data/demo_unpaired_subjects_deseq2_1.38.3.tsv.gz (tables month3_vs_baseline,
# month6_vs_baseline). Run from the repository root:
#   Rscript tests/data/demo_unpaired_subjects_deseq2.R
source("tests/data/demo_inputs.R")
demo <- demo_inputs()
left_out <- c(paste0(c("JDM01", "JDM02", "JDM03"), "_baseline"),
              paste0(rep(c("JDM04", "JDM05"), each = 2), c("_month3", "_month6")),
              "JDM06_baseline", "JDM06_month3")
cd <- demo$samples[demo$samples$group == "patient" & !(demo$samples$sample %in% left_out), ]
stopifnot(nrow(cd) == 66)
cd$subject <- factor(cd$subject)
cd$timepoint <- relevel(factor(cd$timepoint), "baseline")
dds <- DESeqDataSetFromMatrix(demo$counts[, rownames(cd)], cd, ~ subject + timepoint)
dds <- DESeq(dds, quiet = TRUE)
write_tables(lapply(c("month3", "month6"), function(tp) {
  as_table(results(dds, contrast = c("timepoint", tp, "baseline")), paste0(tp, "_vs_baseline"))
}), "tests/data/demo_unpaired_subjects_deseq2_1.38.3.tsv.gz")
