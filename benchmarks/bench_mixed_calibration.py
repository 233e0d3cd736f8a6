"""Calibration of the clinical mixed models on simulated demo-shaped cohorts.

Each data set is a cohort like the demo (25 patients at baseline, month 3 and month 6, a few
follow-up visits missing): a per-patient IFN score trajectory (IFN-high and IFN-low patients,
responders whose score falls and non-responders whose score stays, measurement noise) and a
CMAS-like measure (0-52, rounded) with a between-patient level, an improvement over time
that differs between patients and that the score does not see, its own noise and, where
planted, a within-patient link to the score fall of the size the demo plants
(``ifnsig.simulate``: 12 CMAS points per unit of IFN fall) times ``--link``. A
between-patient confounder (disease severity) raises the score and lowers the measure of the
same patient. Five scenarios:

``exchangeable``
    no link and every patient's measure on the same course over time (its own level plus
    noise): the random-intercept model holds;
``permuted``
    the measure trajectories of a linked cohort permuted across patients: nothing links a
    patient's measure to its score, but measure trajectories differ between patients as in
    real data (some improve a lot, some not at all);
``confounded``
    no within-patient link, the measure's level tied to the score's level through the
    confounder: a between-patient association that is not a within-patient one;
``linked``
    the within-patient link at ``--link`` times the demo's size (power);
``linked_weak``
    the same at half that size.

Per data set and test, the score coefficient's p-value of: (a) the model the clinical stage
fitted before ``ifnsig.mixed_models`` (statsmodels MixedLM on the raw score, Wald z), (b) the
within coefficient with Satterthwaite df (``vcov="model"``, the table's ``pvalue_model``),
(c) the between coefficient with Satterthwaite df, (d) the within coefficient with the CR2
cluster-robust SE and its df (the table's primary ``pvalue``), (e) the between coefficient,
CR2 (``pvalue_between``). Printed: the share of p < ``--alpha`` per scenario and test,
with a binomial 95% interval; one row per scenario and test is appended to
``benchmarks/out/mixed_calibration.tsv``.

Example
-------
python benchmarks/bench_mixed_calibration.py --datasets 400 --seed 1
"""

from __future__ import annotations

import argparse
import time
import warnings
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from ifnsig.mixed_models import fit_random_intercept

OUT = Path(__file__).resolve().parent / "out" / "mixed_calibration.tsv"
TIMEPOINTS = ["baseline", "month3", "month6"]
# Share of the treatment effect reached at each visit, as in ifnsig.simulate.
PROGRESS = np.array([0.0, 0.7, 1.0])
SCENARIOS = ["exchangeable", "permuted", "confounded", "linked", "linked_weak"]
TESTS = {
    "old_wald_z_raw": "statsmodels MixedLM, raw score, Wald z",
    "within_satterthwaite": "within coefficient, REML SE, Satterthwaite df",
    "between_satterthwaite": "between coefficient, REML SE, Satterthwaite df",
    "within_cr2": "within coefficient, CR2 SE and df",
    "between_cr2": "between coefficient, CR2 SE and df",
}


def simulate_cohort(
    rng: np.random.Generator,
    n_patients: int = 25,
    link: float = 1.0,
    confounding: float = 1.0,
    spread: float = 3.0,
    missing: float = 0.04,
) -> pd.DataFrame:
    """One demo-shaped cohort: ``subject``, ``timepoint``, ``score``, ``measure``.

    ``link`` scales the within-patient link of the demo (12 CMAS points per unit of IFN
    fall); ``confounding`` the severity that raises a patient's IFN level and lowers its CMAS;
    ``spread`` is the SD between patients of the improvement by month 6 that the score does
    not see (CMAS points, mean 2).
    """
    severity = rng.normal(0.0, 1.0, n_patients)
    ifn_high = rng.random(n_patients) < 0.84
    responder = rng.random(n_patients) < 0.76
    base_ifn = np.where(
        ifn_high,
        np.clip(0.95 + 0.2 * confounding * severity + rng.normal(0, 0.1, n_patients), 0.4, 1.6),
        np.abs(rng.normal(0.0, 0.08, n_patients)),
    )
    final = np.where(
        responder, rng.uniform(0.05, 0.3, n_patients), rng.uniform(0.75, 1.05, n_patients)
    )
    activity = base_ifn[:, None] * (1.0 - PROGRESS[None, :] * (1.0 - final[:, None]))
    score = activity + rng.normal(0.0, 0.08, activity.shape)
    base_cmas = 29.0 - 4.0 * confounding * severity + rng.normal(0.0, 5.0, n_patients)
    fall = base_ifn[:, None] - activity
    # Clinical improvement the score does not see, differing between patients.
    general = PROGRESS[None, :] * rng.normal(2.0, spread, (n_patients, 1))
    measure = (
        base_cmas[:, None]
        + 12.0 * link * fall * rng.uniform(0.8, 1.2, (n_patients, 1))
        + general
        + rng.normal(0.0, 2.5, activity.shape)
    )
    measure = np.round(np.clip(measure, 0, 52))
    frame = pd.DataFrame(
        {
            "subject": np.repeat([f"P{i:02d}" for i in range(n_patients)], len(TIMEPOINTS)),
            "timepoint": np.tile(TIMEPOINTS, n_patients),
            "score": score.ravel(),
            "measure": measure.ravel(),
        }
    )
    follow_up = frame["timepoint"] != TIMEPOINTS[0]
    frame = frame[~(follow_up & (rng.random(len(frame)) < missing))]
    return frame.reset_index(drop=True)


def permute_measures(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Give each patient the measure trajectory of another (a permutation of patients)."""
    subjects = frame["subject"].unique()
    donor = dict(zip(subjects, rng.permutation(subjects), strict=True))
    measures = frame.set_index(["subject", "timepoint"])["measure"]
    keys = zip(frame["subject"].map(donor), frame["timepoint"], strict=True)
    permuted = frame.assign(measure=[measures.get(key, np.nan) for key in keys])
    return permuted.dropna(subset=["measure"]).reset_index(drop=True)


def scenario_data(name: str, rng: np.random.Generator, link: float) -> pd.DataFrame:
    if name == "exchangeable":
        return simulate_cohort(rng, link=0.0, spread=0.0)
    if name == "permuted":
        return permute_measures(simulate_cohort(rng, link=1.0), rng)
    if name == "confounded":
        return simulate_cohort(rng, link=0.0)
    if name == "linked":
        return simulate_cohort(rng, link=link)
    if name == "linked_weak":
        return simulate_cohort(rng, link=link / 2)
    raise ValueError(f"unknown scenario {name!r}; choose from {SCENARIOS}")


def pvalues(frame: pd.DataFrame, old: bool = True) -> dict[str, float]:
    """The score's p-value under each test of :data:`TESTS` (the former MixedLM if ``old``)."""
    frame = frame.assign(timepoint=pd.Categorical(frame["timepoint"], TIMEPOINTS))
    out = {"old_wald_z_raw": np.nan}
    if old:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = smf.mixedlm("measure ~ score + C(timepoint)", frame, groups=frame["subject"])
            out["old_wald_z_raw"] = float(model.fit(reml=True).pvalues["score"])
    for vcov, suffix in [("model", "satterthwaite"), ("CR2", "cr2")]:
        fit = fit_random_intercept(
            frame, "measure", ["score", "timepoint"], "subject", centre=["score"], vcov=vcov
        )
        out[f"within_{suffix}"] = float(fit.coefficients.loc["score_within", "pvalue"])
        out[f"between_{suffix}"] = float(fit.coefficients.loc["score_between", "pvalue"])
    return out


def calibrate(
    n_datasets: int,
    seed: int = 0,
    scenarios: list[str] | None = None,
    link: float = 0.5,
    alpha: float = 0.05,
    old: bool = True,
) -> pd.DataFrame:
    """Share of p < ``alpha`` per scenario and test, with Clopper-Pearson 95% intervals."""
    rows = []
    for name in scenarios or SCENARIOS:
        # One stream per scenario name, so a scenario's data sets do not depend on the others.
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        data = (scenario_data(name, rng, link) for _ in range(n_datasets))
        results = pd.DataFrame([pvalues(frame, old) for frame in data])
        for test in TESTS:
            valid = results[test].dropna()
            if valid.empty:
                continue
            hits = int((valid < alpha).sum())
            low, high = stats.binomtest(hits, len(valid)).proportion_ci(0.95)
            rows.append(
                {
                    "scenario": name,
                    "test": test,
                    "datasets": len(valid),
                    "rate": hits / max(len(valid), 1),
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=400, help="data sets per scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--link", type=float, default=0.5, help="planted link, demo = 1")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument(
        "--no-old", action="store_true", help="skip the former MixedLM model (the slowest fit)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = calibrate(
        args.datasets, args.seed, args.scenarios, args.link, args.alpha, old=not args.no_old
    )
    seconds = time.perf_counter() - start
    wide = table.assign(
        cell=[
            f"{r:.3f} [{lo:.3f}, {hi:.3f}]"
            for r, lo, hi in zip(table["rate"], table["ci_low"], table["ci_high"], strict=True)
        ]
    ).pivot(index="test", columns="scenario", values="cell")
    wide = wide.loc[
        [t for t in TESTS if t in wide.index], [s for s in SCENARIOS if s in wide.columns]
    ]
    print(
        f"share of p < {args.alpha} over {args.datasets} data sets per scenario "
        f"(seed {args.seed}, link {args.link} x demo), {seconds:.0f} s"
    )
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(wide.to_string())
    OUT.parent.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    table.assign(
        date=stamp, seed=args.seed, link=args.link, alpha=args.alpha, seconds=round(seconds, 1)
    ).to_csv(OUT, sep="\t", index=False, mode="a", header=not OUT.exists())


if __name__ == "__main__":
    main()
