# R DESeq2 1.38.3 (Debian r-bioc-deseq2): the demo's paired fit (~ subject + timepoint, 25
# patients, 75 samples) with DESeq(useT = TRUE): Wald statistics referred to Student's t
# with the default degrees of freedom, samples minus coefficients (75 - 27 = 48). Writes
# tests/data/demo_paired_t_deseq2_1.38.3.tsv.gz (tables month3_vs_baseline,
# month6_vs_baseline). Run from the repository root: Rscript tests/data/demo_paired_t_deseq2.R
source("tests/data/demo_inputs.R")
demo <- demo_inputs()
dds <- demo_paired_patients(demo)
dds <- DESeq(dds, useT = TRUE, quiet = TRUE)
stopifnot(all(mcols(dds)$tDegreesFreedom[!mcols(dds)$allZero] == 48))
write_tables(lapply(c("month3", "month6"), function(tp) {
  as_table(results(dds, contrast = c("timepoint", tp, "baseline")), paste0(tp, "_vs_baseline"))
}), "tests/data/demo_paired_t_deseq2_1.38.3.tsv.gz")
