# R DESeq2 1.38.3 (Debian r-bioc-deseq2): the change from baseline to month6 compared between
# CMAS_gain_3 responders (19) and non-responders (6), the demo's patients at baseline and
# month6 (50 samples). Design as DESeq2's vignette codes "individuals nested within groups":
# ~ response + response:subject_n + response:timepoint, subject_n numbered within group and
# the all-zero columns of the unequal groups dropped. Writes
# tests/data/demo_interaction_deseq2_1.38.3.tsv.gz with the tables
#   interaction (Wald)              contrast list(responder.month6, non_responder.month6)
#   within_non_responder, within_responder (Wald)    the group's timepoint coefficient
#   interaction_lrt                 LRT against ~ response + response:subject_n + timepoint,
#                                   with the interaction's log2FoldChange and lfcSE
# and the calls used to tests/data/demo_cmas_gain_3_calls.tsv. Run from the repository root:
#   Rscript tests/data/demo_interaction_deseq2.R
source("tests/data/demo_inputs.R")
demo <- demo_inputs()
cd <- demo$samples[demo$samples$group == "patient" &
                   demo$samples$timepoint %in% c("baseline", "month6"), ]
cd$response <- relevel(factor(cd$response), "non_responder")
cd$timepoint <- relevel(factor(cd$timepoint), "baseline")
cd$subject_n <- factor(ave(seq_len(nrow(cd)), cd$response,
                           FUN = function(i) as.integer(factor(cd$subject[i]))))
nonzero <- function(mm) mm[, colSums(mm != 0) > 0]
full <- nonzero(model.matrix(~ response + response:subject_n + response:timepoint, cd))
reduced <- nonzero(model.matrix(~ response + response:subject_n + timepoint, cd))
dds <- DESeqDataSetFromMatrix(demo$counts[, rownames(cd)], cd, ~ response + timepoint)
wald <- DESeq(dds, full = full, quiet = TRUE)
lrt <- DESeq(dds, test = "LRT", full = full, reduced = reduced, quiet = TRUE)
test <- "responseresponder.timepointmonth6"
ref <- "responsenon_responder.timepointmonth6"
stopifnot(c(test, ref) %in% resultsNames(wald))
write_tables(list(
  as_table(results(wald, contrast = list(test, ref)), "interaction"),
  as_table(results(wald, name = ref), "within_non_responder"),
  as_table(results(wald, name = test), "within_responder"),
  as_table(results(lrt, contrast = list(test, ref)), "interaction_lrt")
), "tests/data/demo_interaction_deseq2_1.38.3.tsv.gz")
write.table(demo$calls, "tests/data/demo_cmas_gain_3_calls.tsv", sep = "\t", quote = FALSE,
            row.names = FALSE)
