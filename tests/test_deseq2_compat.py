"""The DESeq2 steps ifnsig does the R way: dispersion trend, prior variance, filtering."""

import numpy as np
import pandas as pd
import pytest
from conftest import shared_data

from ifnsig.de.deseq2_compat import (
    cooks_distances,
    independent_filtering,
    monte_carlo_prior_variance,
    n_distinct_rows,
    n_or_more_replicates,
    parametric_dispersion_trend,
)


def test_n_or_more_replicates_is_pydeseq2s():
    from pydeseq2.utils import n_or_more_replicates as pydeseq2s

    rng = np.random.default_rng(0)
    design = pd.DataFrame(
        rng.integers(0, 2, (40, 3)).astype(float),
        index=[f"s{i}" for i in range(40)],
        columns=["Intercept", "a", "b"],
    )
    for at_least in (1, 3, 6, 41):
        ours, theirs = n_or_more_replicates(design, at_least), pydeseq2s(design, at_least)
        assert ours.index.equals(theirs.index)
        assert np.array_equal(ours.to_numpy(dtype=bool), theirs.to_numpy(dtype=bool))
    assert n_distinct_rows(design) == len(design.value_counts())
    design.iloc[0] = -0.0 * design.iloc[0]
    assert n_distinct_rows(design) == len(design.value_counts())


def test_cooks_distances_by_chunks_have_pydeseq2s_bits():
    """Any number of threads, both array layouts, with and without cells of 3+ samples."""
    from pydeseq2.utils import robust_method_of_moments_disp

    def pydeseq2s(counts, normed, mu, hat, design):  # DeseqDataSet.calculate_cooks
        res = counts - mu
        res **= 2
        v = mu**2
        v *= robust_method_of_moments_disp(normed, design)[None, :]
        v += mu
        res /= v
        res /= design.shape[-1]
        diag_mul = 1 - hat
        diag_mul **= 2
        return res * (hat / diag_mul)

    rng = np.random.default_rng(3)
    for n, g, cells in [(24, 9, True), (24, 2, True), (16, 301, False), (10, 3, False)]:
        if cells:  # three groups of 8
            design = pd.DataFrame({"Intercept": 1.0, "b": np.arange(n) % 3 == 1.0})
            design["c"] = (np.arange(n) % 3 == 2) * 1.0
        else:  # pairs
            pairs = [np.arange(n) // 2 == j for j in range(1, n // 2)]
            design = pd.DataFrame(np.column_stack([np.ones(n), np.arange(n) % 2, *pairs]))
        design = design.astype(float)
        for order in "CF":
            counts = rng.negative_binomial(5, 0.1, (n, g))
            normed = np.asarray(counts / rng.uniform(0.5, 2, (n, 1)), order=order)
            mu, hat = rng.uniform(1, 100, (n, g)), rng.uniform(0, 0.9, (n, g))
            expected = pydeseq2s(counts, normed, mu, hat, design)
            for n_cpus in (1, 2, 3):
                got = cooks_distances(counts, normed, mu, hat, design, n_cpus)
                assert np.array_equal(got, expected), (n, g, order, n_cpus)


def test_design_row_groups_are_pandas_groups():
    """Rows grouped by their nonzero entries, as ``value_counts`` groups them by every column
    (a negative zero is a zero; continuous columns compared bit for bit)."""
    from ifnsig.de.deseq2_compat import _DistinctRows
    from ifnsig.de.indicators import row_groups

    rng = np.random.default_rng(1)
    binary = rng.integers(0, 2, (60, 4)).astype(float)
    binary[rng.random(binary.shape) < 0.1] = -0.0
    continuous = np.column_stack([np.ones(60), rng.choice([0.5, 1.25, 3.0], 60)])
    subjects = np.repeat(np.eye(20), 3, axis=0)[:, 1:]
    for x in (binary, continuous, np.column_stack([np.ones(60), subjects, binary[:, :1]])):
        for order in ("C", "F"):
            design = pd.DataFrame(np.asarray(x, order=order))
            group, sizes = row_groups(design)
            theirs = design.groupby(list(design.columns)).ngroup().to_numpy()
            # The same partition of the rows (the groups may be numbered otherwise).
            pairs = np.unique(np.column_stack([group, theirs]), axis=0)
            assert len(pairs) == len(sizes) == theirs.max() + 1
            np.testing.assert_array_equal(sizes[pairs[:, 0]], np.bincount(theirs)[pairs[:, 1]])
            counted = _DistinctRows(design).value_counts()
            np.testing.assert_array_equal(counted.to_numpy(), design.value_counts().to_numpy())


def test_independent_filtering_reproduces_r_on_r_pvalues():
    """Fed R DESeq2's own airway p-values, the filter picks R's threshold and R's 4,819 genes."""
    reference = pd.read_csv(
        shared_data("airway", "reference_deseq2", "deseq2_1.38.3_cell+dex_results.csv.gz"),
        index_col=0,
    )
    padj, threshold = independent_filtering(reference["baseMean"], reference["pvalue"], 0.1)
    assert abs(threshold - 4.5034) < 1e-3  # R: metadata(res)$filterThreshold
    assert int((padj < 0.1).sum()) == 4819
    tested = ~np.isnan(padj)
    assert np.allclose(padj[tested], reference["padj"].to_numpy()[tested], rtol=1e-9)
    assert np.array_equal(tested, reference["padj"].notna().to_numpy())


def test_independent_filtering_without_signal_keeps_every_gene():
    rng = np.random.default_rng(0)
    base_mean = rng.lognormal(3, 2, 2000)
    padj, threshold = independent_filtering(base_mean, rng.uniform(size=2000), 0.1)
    assert threshold == base_mean.min()
    assert not np.isnan(padj).any()


def test_independent_filtering_drops_uninformative_low_counts():
    """Signal only among well-expressed genes: filtering out the rest gains rejections."""
    from scipy.stats import false_discovery_control

    rng = np.random.default_rng(1)
    base_mean = rng.lognormal(3, 2, 5000)
    pvalues = rng.uniform(size=5000)
    signal = (base_mean > np.quantile(base_mean, 0.6)) & (rng.uniform(size=5000) < 0.3)
    pvalues[signal] = rng.beta(0.2, 8, signal.sum())
    padj, threshold = independent_filtering(base_mean, pvalues, 0.1)
    assert threshold > base_mean.min()
    assert np.isnan(padj[base_mean < threshold]).all()
    assert not np.isnan(padj[base_mean >= threshold]).any()
    unfiltered = false_discovery_control(pvalues, method="bh")
    assert (padj < 0.1).sum() > (unfiltered < 0.1).sum()


def test_parametric_trend_recovers_the_curve_and_ignores_floored_genes():
    rng = np.random.default_rng(2)
    means = rng.lognormal(4, 2, 8000)
    truth = 0.01 + 3.6 / means
    dispersions = truth * rng.gamma(4, 1 / 4, means.size)
    dispersions[:500] = 1e-8  # genes at pydeseq2's minimum, which DESeq2 leaves out
    a0, a1 = parametric_dispersion_trend(means, dispersions)
    assert abs(a0 - 0.01) < 0.001 and abs(a1 - 3.6) < 0.2


def test_parametric_trend_gives_up_like_deseq2():
    """No dependence on the mean and a negative slope: DESeq2 stops the parametric fit."""
    rng = np.random.default_rng(3)
    means = rng.lognormal(4, 2, 3000)
    dispersions = 0.05 * means**0.3 * rng.gamma(4, 1 / 4, means.size)
    assert parametric_dispersion_trend(means, dispersions) is None


def test_monte_carlo_prior_variance_recovers_the_planted_variance():
    rng = np.random.default_rng(4)
    df = 3
    for planted in (0.6, 1.5):
        residuals = np.log(rng.chisquare(df, 20_000) / df) + rng.normal(0, np.sqrt(planted), 20_000)
        assert abs(monte_carlo_prior_variance(residuals, df) - planted) < 0.2
    sampling_only = np.log(rng.chisquare(df, 20_000) / df)
    assert monte_carlo_prior_variance(sampling_only, df) == 0.25


def test_library_warnings_are_logged_once_and_pydeseq2_overflow_explained(caplog):
    import logging

    from ifnsig.stages import _WarningLog

    show = _WarningLog()
    caplog.set_level(logging.WARNING)
    fit = "/site-packages/pydeseq2/utils.py"
    for _ in range(3):
        show(RuntimeWarning("overflow encountered in exp"), RuntimeWarning, fit, 10)
        show(UserWarning("something else"), UserWarning, "/site-packages/other/mod.py", 5)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "numerical overflow" in messages[0] and "other genes are not affected" in messages[0]
    assert messages[1].startswith("UserWarning: something else")


def test_near_poisson_counts_keep_gene_wise_dispersions_without_library_warnings(caplog):
    # The bad-input corpus's base project: 4 patients at two timepoints, 15 genes whose
    # counts are close to Poisson. pydeseq2 took the trimmed mean of no dispersion (NaN)
    # into its prior and MAP steps, warning on the way; DESeq2 advises the gene-wise
    # estimates, which are used, with one log line.
    import logging
    import warnings

    import yaml
    from conftest import REPO

    from ifnsig import data, de
    from ifnsig.validation import validate_config

    base = REPO / "tests" / "bad_inputs" / "_base"
    counts = pd.read_csv(base / "counts.tsv", sep="\t", index_col=0)
    samples = pd.read_csv(base / "samples.tsv", sep="\t", dtype=str).set_index("sample", drop=False)
    config = validate_config(yaml.safe_load((base / "config" / "config.yaml").read_text()))
    adata = data.build_anndata(counts, samples)
    cohort = de.cohort_samples(adata.obs)
    (fit,) = de.plan_fits(cohort, config)
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dds, _ = de.fit_dataset(adata, fit, cohort)
        (table,) = de.run_fit(adata, fit, cohort).values()
    assert [str(w.message) for w in caught] == []
    assert "the gene-wise estimates are the final dispersions" in caplog.text
    np.testing.assert_array_equal(dds.var["dispersions"], dds.var["genewise_dispersions"])
    assert table["pvalue"].notna().all()
    # Shrinkage pulls each fold change towards zero, never past it.
    shrunk, mle = table["log2FoldChange_shrunk"], table["log2FoldChange"]
    assert (shrunk.abs() <= mle.abs() + 1e-9).all() and (shrunk * mle >= 0).all()


def test_dispersion_outliers_keep_their_gene_wise_estimate_as_deseq2():
    # DESeq2's estimateDispersionsMAP(outlierSD = 2): a gene whose gene-wise dispersion lies
    # more than 2 SDs (the MAD of the log residuals over the genes above 100 x minDisp, as
    # varLogDispEsts) above the trend keeps its gene-wise estimate; every other gene gets
    # its MAP estimate. Checked for both backends on a small paired design.
    from ifnsig.de.blocked import BlockedInference
    from ifnsig.de.deseq2_compat import DESeq2Inference, deseq_dataset_class

    rng = np.random.default_rng(3)
    n_subjects, n_genes = 8, 120
    meta = pd.DataFrame(
        {
            "subject": np.repeat([f"p{i}" for i in range(n_subjects)], 2),
            "timepoint": ["baseline", "month6"] * n_subjects,
        },
        index=[f"s{i}" for i in range(2 * n_subjects)],
    )
    design = pd.get_dummies(meta["subject"], drop_first=True, dtype=float)
    design.insert(0, "Intercept", 1.0)
    design["timepoint[T.month6]"] = (meta["timepoint"] == "month6").astype(float)
    mean = np.exp(rng.normal(np.log(200), 1.0, n_genes))
    dispersion = 0.05 + 1.0 / mean
    dispersion[:6] *= 20  # far above the trend
    subject = np.exp(rng.normal(0, 0.3, (n_subjects, n_genes)))[np.repeat(range(n_subjects), 2)]
    mu = mean * subject
    counts = rng.negative_binomial(1 / dispersion, 1 / (1 + dispersion * mu))
    counts = pd.DataFrame(counts, index=meta.index, columns=[f"g{j}" for j in range(n_genes)])
    for backend in (DESeq2Inference(n_cpus=1), BlockedInference(n_cpus=1, min_levels=2)):
        dds = deseq_dataset_class()(
            counts=counts, metadata=meta, design=design, inference=backend, quiet=True
        )
        dds.deseq2()
        var = dds.var
        genewise, trend = var["genewise_dispersions"], var["fitted_dispersions"]
        residual = np.log(genewise) - np.log(trend)
        above = genewise >= 100 * 1e-8
        median = np.median(residual[above])
        mad = np.median(np.abs(residual[above] - median)) * 1.4826
        outlier = residual > 2 * mad
        assert outlier[:6].sum() >= 4 and outlier[6:].sum() <= 6
        np.testing.assert_array_equal(var["_outlier_genes"].to_numpy(bool), outlier.to_numpy())
        np.testing.assert_allclose(var.loc[outlier, "dispersions"], genewise[outlier])
        np.testing.assert_allclose(
            var.loc[~outlier, "dispersions"], var.loc[~outlier, "MAP_dispersions"]
        )


def test_pydeseq2_is_imported_without_its_plotting_and_sklearn_modules_until_used():
    import sys

    import pydeseq2.utils
    from sklearn.linear_model import LinearRegression

    from ifnsig.de.pydeseq2_base import utils
    from ifnsig.lazy import without_modules

    assert utils is pydeseq2.utils
    # The stand-in served pydeseq2's import only; its regression is scikit-learn's.
    assert isinstance(utils.LinearRegression(fit_intercept=False), LinearRegression)
    assert sys.modules["sklearn.linear_model"].LinearRegression is LinearRegression
    with without_modules("ifnsig_module_not_imported"), pytest.raises(ImportError):
        import ifnsig_module_not_imported  # noqa: F401
    assert "ifnsig_module_not_imported" not in sys.modules
