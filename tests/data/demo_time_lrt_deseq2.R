# R DESeq2 1.38.3 (Debian r-bioc-deseq2): any change over time in the demo's 25 patients
# (75 samples), DESeq(test = "LRT") of ~ subject + timepoint against ~ subject; results()
# reports the last coefficient (month6 vs baseline) as log2FoldChange. Writes
# tests/data/demo_time_lrt_deseq2_1.38.3.tsv.gz (table time_lrt). Run from the repository
# root: Rscript tests/data/demo_time_lrt_deseq2.R
source("tests/data/demo_inputs.R")
demo <- demo_inputs()
dds <- demo_paired_patients(demo)
dds <- DESeq(dds, test = "LRT", reduced = ~ subject, quiet = TRUE)
write_tables(list(as_table(results(dds), "time_lrt")),
             "tests/data/demo_time_lrt_deseq2_1.38.3.tsv.gz")
