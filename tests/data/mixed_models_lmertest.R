# Reference fits for tests/test_mixed_models.py: R 4.2 lme4 1.1-31, lmerTest 3.1-3 and
# clubSandwich 0.5.8 (Debian r-cran-lmertest, r-cran-clubsandwich).
# Run from tests/data: Rscript mixed_models_lmertest.R
# Writes mixed_models_data.tsv, the demo cohort's clinical table (config/clinical.tsv) with the
# planted IFN activity of each sample as the score (resources/demo/truth_samples.tsv), the drug
# (truth_subjects.tsv), six visits removed (unbalanced subjects, one left with its baseline only)
# and a pure-noise response (a singular fit); and mixed_models_lmertest.tsv, per model and fixed
# effect: REML estimate, SE, Satterthwaite df, t, p (lmerTest's summary) and the CR2 SE, df and p
# (clubSandwich).
suppressMessages({
  library(lmerTest)
  library(clubSandwich)
})
clinical <- read.delim("../../config/clinical.tsv")
samples <- read.delim("../../resources/demo/truth_samples.tsv")
subjects <- read.delim("../../resources/demo/truth_subjects.tsv")
d <- merge(clinical, samples[, c("subject", "timepoint", "ifn_activity")])
d <- merge(d, subjects[, c("subject", "drug")])
names(d)[names(d) == "ifn_activity"] <- "score"
d$score <- round(d$score, 6)
dropped <- paste(c("JDM03", "JDM07", "JDM12", "JDM15", "JDM15", "JDM20"),
                 c("month6", "month3", "baseline", "month3", "month6", "month6"))
d <- d[!paste(d$subject, d$timepoint) %in% dropped, ]
d <- d[order(d$subject, d$timepoint), ]
set.seed(3)
d$noise <- round(rnorm(nrow(d)), 6)
write.table(d[, c("subject", "timepoint", "drug", "score", "CMAS", "CAT_BM_activity",
                  "prednisone_mg_kg_day", "noise")],
            "mixed_models_data.tsv", sep = "\t", quote = FALSE, row.names = FALSE)

d$timepoint <- factor(d$timepoint, levels = c("baseline", "month3", "month6"))
d$drug <- factor(d$drug)
centre <- function(x) list(within = x - ave(x, d$subject), between = ave(x, d$subject))
d$score_within <- centre(d$score)$within
d$score_between <- centre(d$score)$between
d$prednisone_mg_kg_day_within <- centre(d$prednisone_mg_kg_day)$within
d$prednisone_mg_kg_day_between <- centre(d$prednisone_mg_kg_day)$between
models <- list(
  raw_CMAS = CMAS ~ score + timepoint,
  centred_CMAS = CMAS ~ score_within + score_between + timepoint,
  centred_prednisone_drug = prednisone_mg_kg_day ~ score_within + score_between + timepoint + drug,
  centred_CAT_prednisone = CAT_BM_activity ~ score_within + score_between + timepoint +
    prednisone_mg_kg_day_within + prednisone_mg_kg_day_between,
  centred_noise = noise ~ score_within + score_between + timepoint
)
# Tolerances far below lme4's defaults, so the reference is the REML optimum itself.
control <- lmerControl(optimizer = "nloptwrap", check.conv.singular = "ignore",
                       optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-16, xtol_rel = 0,
                                      ftol_rel = 0, maxeval = 1e5))
tables <- lapply(names(models), function(name) {
  form <- update(models[[name]], . ~ . + (1 | subject))
  fit <- lmer(form, data = d, REML = TRUE, control = control)
  s <- summary(fit, ddf = "Satterthwaite")$coefficients
  robust <- coef_test(fit, vcov = "CR2", cluster = d$subject, test = "Satterthwaite")
  vc <- as.data.frame(VarCorr(fit))
  data.frame(model = name, term = rownames(s), estimate = s[, "Estimate"],
             se = s[, "Std. Error"], df = s[, "df"], statistic = s[, "t value"],
             pvalue = s[, "Pr(>|t|)"], cr2_se = robust$SE, cr2_df = robust$df_Satt,
             cr2_pvalue = robust$p_Satt, group_variance = vc$vcov[vc$grp == "subject"],
             residual_variance = vc$vcov[vc$grp == "Residual"], reml_criterion = REMLcrit(fit),
             singular = isSingular(fit))
})
write.table(do.call(rbind, tables), "mixed_models_lmertest.tsv", sep = "\t", quote = FALSE,
            row.names = FALSE)
