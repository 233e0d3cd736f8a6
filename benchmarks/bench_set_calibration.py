"""Calibration and power of the enrichment's set tests on many demo-shaped cohorts.

The set tests alone, so that tens of cohorts fit in a few minutes: each cohort comes from the
simulator as in ``bench_calibration.py`` (null: ``CohortSpec(null=True)``, planted: the
demo's effects, 25 patients at three timepoints, ``--genes`` genes), and each of its
follow-ups is compared with baseline in the patients as the ``enrichment`` stage compares
``month3_vs_baseline`` and ``month6_vs_baseline``: the workflow's gene sets (the shipped GMT
and the Li 2014 blood modules, restricted to the data's symbols, ``enrichment.min_size`` and
``max_size``), their set scores (:func:`ifnsig.set_tests.set_scores`) and the sign-flip test
(:func:`ifnsig.set_tests.set_tests`, ``--permutations`` arrangements). One difference from
the stage: set scores are means of log2(DESeq2-normalized count + 1) rather than of VST
values (the VST fit is most of a small cohort's time; for the expressed genes of these sets
the two differ by a near-constant). ``bench_calibration.py`` runs the stage itself.

Printed: the share of null contrasts with any set, and with a shipped type I IFN set, at
FDR < 0.05 (Clopper-Pearson 95% interval), and on planted cohorts the share of the type I
signatures (RICE2013_6, NIH28, FENG2006_5) found falling at FDR < 0.05 (power).

Example
-------
python benchmarks/bench_set_calibration.py --null 20 --planted 10 --genes 3000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
TYPE1 = ["RICE2013_6", "NIH28", "FENG2006_5"]
FOLLOW_UPS = ["month3", "month6"]


def workflow_sets(symbols: set[str]) -> tuple[dict[str, list[str]], set[str]]:
    """The enrichment's gene sets in the data's symbols, and the shipped IFN sets' names."""
    from ifnsig import genesets
    from ifnsig.enrichment import restrict_to

    shipped = genesets.load_gene_sets(genesets.SHIPPED_GMT)
    sets = dict(shipped)
    for name, genes in genesets.li2014_modules().items():
        sets.setdefault(name, genes)
    aliases = genesets.read_aliases(genesets.SHIPPED_ALIASES)
    return restrict_to(sets, symbols, aliases), set(genesets.ifn_sets(shipped))


def cohort_contrasts(cohort, settings: dict, permutations: int, seed: int) -> list[pd.DataFrame]:
    """The set-test table of each follow-up vs baseline of one cohort."""
    from pydeseq2.preprocessing import deseq2_norm

    from ifnsig import set_tests

    counts = cohort.counts.T
    normalized, _ = deseq2_norm(counts.to_numpy())
    values = pd.DataFrame(np.log2(normalized + 1.0), index=counts.index, columns=counts.columns)
    symbols = cohort.truth_genes.set_index("gene_id")["symbol"].reindex(counts.columns)
    sets, _ = workflow_sets(set(symbols.astype(str)))
    scores, sizes = set_tests.set_scores(
        values, symbols.astype(str), sets, settings["min_size"], settings["max_size"]
    )
    patients = cohort.samples[cohort.samples["group"] == "patient"]
    tables = []
    for test in FOLLOW_UPS:
        chosen = patients[patients["timepoint"].isin(["baseline", test])]
        frame = pd.DataFrame(
            {
                "sample": chosen["sample"].to_numpy(),
                "subject": chosen["subject"].to_numpy(),
                "level": chosen["timepoint"].to_numpy(),
            }
        )
        comparison = set_tests.Comparison("sign_flip", frame, test, "baseline")
        tables.append(set_tests.set_tests(scores, sizes, comparison, permutations, seed))
    return tables


def share(hits: int, trials: int) -> str:
    low, high = stats.binomtest(hits, trials).proportion_ci(0.95)
    return f"{100 * hits / trials:.1f} % ({100 * low:.1f}-{100 * high:.1f}; {hits}/{trials})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--null", type=int, default=20, help="null cohorts")
    parser.add_argument("--planted", type=int, default=10, help="planted (demo-like) cohorts")
    parser.add_argument("--genes", type=int, default=3000)
    parser.add_argument("--permutations", type=int, default=999, help="sign-flip arrangements")
    parser.add_argument("--seed", type=int, default=1, help="first seed of each kind")
    args = parser.parse_args(argv)

    import importlib.util

    from ifnsig.simulate import simulate_cohort

    spec = importlib.util.spec_from_file_location(
        "bench_calibration", Path(__file__).with_name("bench_calibration.py")
    )
    calibration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibration)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    settings, seed = config["enrichment"], config["seed"]
    start = time.perf_counter()
    counts = {"any": 0, "ifn": 0, "contrasts": 0, "found": 0, "signatures": 0}
    planted = dict(counts)
    plan = [("null", args.seed + i) for i in range(args.null)]
    plan += [("planted", 1000 + args.seed + i) for i in range(args.planted)]
    for kind, cohort_seed in plan:
        cohort = simulate_cohort(calibration.cohort_spec(kind, cohort_seed, args.genes))
        _, ifn = workflow_sets(set(cohort.truth_genes["symbol"].astype(str)))
        tally = counts if kind == "null" else planted
        for table in cohort_contrasts(cohort, settings, args.permutations, seed):
            significant = table[table["fdr"] < 0.05]
            tally["contrasts"] += 1
            tally["any"] += int(len(significant) > 0)
            tally["ifn"] += int(significant["gene_set"].isin(ifn).any())
            rows = table[table["gene_set"].isin(TYPE1)]
            tally["signatures"] += len(rows)
            tally["found"] += int(((rows["fdr"] < 0.05) & (rows["estimate"] < 0)).sum())
    minutes = (time.perf_counter() - start) / 60
    print(
        f"{args.null} null and {args.planted} planted cohorts, {args.genes} genes, "
        f"{args.permutations} arrangements, {minutes:.1f} min\n"
    )
    if counts["contrasts"]:
        print(
            "null contrasts with any set at FDR < 0.05:", share(counts["any"], counts["contrasts"])
        )
        print(
            "null contrasts with an IFN set at FDR < 0.05:",
            share(counts["ifn"], counts["contrasts"]),
        )
    if planted["contrasts"]:
        print(
            "planted: type I IFN signatures found falling at FDR < 0.05:",
            share(planted["found"], planted["signatures"]),
        )


if __name__ == "__main__":
    main()
