"""Differential expression: contrasts planned and checked before any fit (:mod:`.plan`), each
planned design fitted once with pydeseq2 (:mod:`.fit`), DESeq2 1.38's own dispersion,
prior and filtering steps (:mod:`.deseq2_compat`) and the subject-blocked backend for paired
designs (:mod:`.blocked`)."""
