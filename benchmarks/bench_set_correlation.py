"""Prerank's gene-label permutations against the set tests when a set's genes move together.

Real IFN scores fluctuate between visits, and every ISG follows: the genes of an IFN set are
strongly correlated. Each data set here is one paired contrast of ``--subjects`` subjects
(baseline and month 6) on VST-like values: a set of ``--set-genes`` genes that share a person
factor and, at each visit, a visit factor (SD ``--visit-sd``), and ``--background`` genes
that change by independent noise. Under the null nothing is planted; under the alternative
every subject's set moves by ``--shift``. Genes are ranked by the paired t statistic of
their change (the Wald statistic of a paired DE fit, to first order) and the set is tested
by the workflow's prerank (``ifnsig.enrichment.prerank``: gseapy, ``--permutations`` gene
label permutations) and by the workflow's set test (``ifnsig.set_tests``: sign flips of each
subject's set-score change). Printed: the share of data sets with p < 0.05 per test, with
its Clopper-Pearson 95% interval.

Example
-------
python benchmarks/bench_set_correlation.py --datasets 100
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats


def data_set(rng, args, shift: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples x set genes values and the paired comparison frame; ranks in ``attrs``."""
    n, k, b = args.subjects, args.set_genes, args.background
    person = rng.normal(0, 1, (n, 1))
    visit = rng.normal(0, args.visit_sd, (n, 2))
    base = 8 + person + visit[:, :1] + rng.normal(0, 0.2, (n, k))
    later = 8 + person + visit[:, 1:] + shift + rng.normal(0, 0.2, (n, k))
    background = rng.normal(0, 0.3, (n, b))
    change = np.c_[later - base, background]
    t = change.mean(axis=0) / (change.std(axis=0, ddof=1) / np.sqrt(n))
    genes = [f"SET{i}" for i in range(k)] + [f"BG{i}" for i in range(b)]
    subjects = [f"P{i:02d}" for i in range(n)]
    samples = [f"{s}_baseline" for s in subjects] + [f"{s}_month6" for s in subjects]
    values = pd.DataFrame(np.r_[base, later], index=samples, columns=genes[:k])
    frame = pd.DataFrame(
        {"sample": samples, "subject": subjects * 2, "level": ["baseline"] * n + ["month6"] * n}
    )
    frame.attrs["rank"] = pd.Series(t, index=genes)
    return values, frame


def share(hits: int, trials: int) -> str:
    low, high = stats.binomtest(hits, trials).proportion_ci(0.95)
    return f"{100 * hits / trials:.1f}% ({100 * low:.1f}-{100 * high:.1f}; {hits}/{trials})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=100, help="data sets per hypothesis")
    parser.add_argument("--subjects", type=int, default=25)
    parser.add_argument("--set-genes", type=int, default=30)
    parser.add_argument("--background", type=int, default=970)
    parser.add_argument("--visit-sd", type=float, default=0.3)
    parser.add_argument("--shift", type=float, default=-0.3, help="planted set change")
    parser.add_argument("--permutations", type=int, default=1000, help="prerank's")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    from ifnsig import set_tests
    from ifnsig.enrichment import prerank

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    hits = {(h, t): 0 for h in ("null", "planted") for t in ("prerank", "set test")}
    for hypothesis, shift in [("null", 0.0), ("planted", args.shift)]:
        for i in range(args.datasets):
            values, frame = data_set(rng, args, shift)
            genes = list(values.columns)
            ranked = prerank(
                frame.attrs["rank"], {"SET": genes}, permutations=args.permutations, seed=i
            )
            hits[hypothesis, "prerank"] += int(ranked["pvalue"].iloc[0] < 0.05)
            scores, sizes = set_tests.set_scores(values, genes, {"SET": genes})
            comparison = set_tests.Comparison("sign_flip", frame, "month6", "baseline")
            tested = set_tests.set_tests(scores, sizes, comparison, 999, seed=i)
            hits[hypothesis, "set test"] += int(tested["pvalue"].iloc[0] < 0.05)
    seconds = time.perf_counter() - start
    print(
        f"{args.datasets} data sets per hypothesis, {args.subjects} subjects, visit SD "
        f"{args.visit_sd}, shift {args.shift}, {seconds:.0f} s"
    )
    for test in ("prerank", "set test"):
        print(
            f"{test}: null {share(hits['null', test], args.datasets)}, "
            f"planted {share(hits['planted', test], args.datasets)}"
        )


if __name__ == "__main__":
    main()
