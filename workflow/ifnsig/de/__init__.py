"""Differential expression: contrasts planned and checked before any fit (:mod:`.plan`), each
planned design fitted once with pydeseq2 (:mod:`.fit`), DESeq2 1.38's own dispersion,
prior and filtering steps (:mod:`.deseq2_compat`), DESeq2's likelihood-ratio test
(:mod:`.lrt`), the subject-blocked backend for paired designs (:mod:`.blocked`) and
apeGLM-shrunk fold changes for all genes at once (:mod:`.shrink`)."""

from ifnsig.de.fit import choose_inference, fit_dataset, run_fit
from ifnsig.de.lrt import likelihood_ratio_test
from ifnsig.de.plan import (
    NON_RESPONDER,
    RESPONDER,
    RESULT_COLUMNS,
    Contrast,
    Fit,
    Groups,
    add_response_columns,
    clinical_covariates,
    cohort_samples,
    compared_levels,
    composition_covariates,
    contrast_vectors,
    contrasts_from_config,
    de_tables,
    design_frame,
    design_matrix,
    fitted_samples,
    plan_fits,
    reduced_design,
    response_column,
    table_names,
    uses_responses,
)

__all__ = [
    "NON_RESPONDER",
    "RESPONDER",
    "RESULT_COLUMNS",
    "Contrast",
    "Fit",
    "Groups",
    "add_response_columns",
    "choose_inference",
    "clinical_covariates",
    "cohort_samples",
    "compared_levels",
    "composition_covariates",
    "contrast_vectors",
    "contrasts_from_config",
    "de_tables",
    "design_frame",
    "design_matrix",
    "fit_dataset",
    "fitted_samples",
    "likelihood_ratio_test",
    "plan_fits",
    "reduced_design",
    "response_column",
    "run_fit",
    "table_names",
    "uses_responses",
]
