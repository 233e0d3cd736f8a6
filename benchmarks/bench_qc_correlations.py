"""Peak memory and time of the QC correlation checks at 10,000 samples, blocked or whole.

The pairing check (person correlations, best match per sample), the correlation outliers
(median correlation per sample) and the heatmap's matrix run on a simulated VST matrix
(subjects with three samples each) in a child process (``_measure.measure_child``: the
child's own peak resident memory):

- ``blocked``: the workflow's ``qc.pairing_check``, ``qc.correlation_outliers`` and
  ``qc.heatmap_rows`` (correlations computed ``qc.CORRELATION_BLOCK`` samples at a time, the
  heatmap's matrix of at most ``qc.HEATMAP_SAMPLES`` samples);
- ``whole``: the same checks on whole sample x sample matrices, as computed before (the
  heatmap's matrix of every sample; its clustering is not timed in either mode).

Both must give the same per-sample tables (to 1e-12). One row per measurement is appended to
``benchmarks/out/qc_correlations.tsv``.

Example
-------
python benchmarks/bench_qc_correlations.py --samples 10000 --genes 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from _measure import append_rows, measure_child, report_step_time

OUT = Path(__file__).resolve().parent / "out" / "qc_correlations.tsv"


def simulate(samples: int, genes: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    subject = np.arange(samples) // 3
    people = rng.normal(0, 0.5, (subject[-1] + 1, genes))
    vst = rng.normal(8, 2, genes) + people[subject] + rng.normal(0, 1, (samples, genes))
    sheet = pd.DataFrame(
        {
            "sample": [f"S{i:05d}" for i in range(samples)],
            "subject": [f"P{k:05d}" for k in subject],
            "group": "patient",
            "timepoint": np.tile(["t0", "t3", "t6"], samples // 3 + 1)[:samples],
        }
    )
    return vst, sheet


def whole_checks(vst: np.ndarray, sheet: pd.DataFrame) -> pd.DataFrame:
    """The checks on whole matrices (the former implementation)."""
    from ifnsig import qc

    unit = qc.person_profiles(vst, sheet)
    r = np.clip(unit @ unit.T, -1.0, 1.0)
    del unit
    subjects = sheet["subject"].to_numpy()
    n = len(r)
    np.fill_diagonal(r, -np.inf)
    same = subjects[:, None] == subjects[None, :]
    own = np.where(same, r, -np.inf)
    other = np.where(~same, r, -np.inf)
    own_r = own[np.arange(n), own.argmax(axis=1)]
    table = pd.DataFrame(
        {
            "sample": sheet["sample"],
            # A subject's only sample has no own match (NaN, as the pairing table says).
            "own_r": np.where(np.isfinite(own_r), own_r, np.nan),
            "best_other_r": other[np.arange(n), other.argmax(axis=1)],
        }
    )
    del r, same, own, other
    unit = qc.unit_rows(vst)
    r = np.clip(unit @ unit.T, -1.0, 1.0)
    heatmap = r.copy()
    np.fill_diagonal(r, np.nan)
    table["median_r"] = np.nanmedian(r, axis=1)
    assert heatmap.shape == (n, n)
    return table


def blocked_checks(vst: np.ndarray, sheet: pd.DataFrame) -> pd.DataFrame:
    from ifnsig import qc

    pairing, _ = qc.pairing_check(qc.person_profiles(vst, sheet), sheet)
    unit = qc.unit_rows(vst)
    outliers, _ = qc.correlation_outliers(unit, sheet, nmads=5)
    shown = qc.heatmap_rows(sheet["sample"], set(), seed=1)
    heatmap = qc._shown_correlation(unit, shown)
    assert heatmap.shape == (len(shown), len(shown))
    return pairing[["sample", "own_r", "best_other_r"]].assign(median_r=outliers["median_r"])


def run_child(args, table: Path) -> None:
    from threadpoolctl import threadpool_limits

    vst, sheet = simulate(args.samples, args.genes, args.seed)
    start = time.perf_counter()
    with threadpool_limits(limits=args.threads):
        result = (blocked_checks if args.mode == "blocked" else whole_checks)(vst, sheet)
    seconds = time.perf_counter() - start
    result.to_csv(table, sep="\t", index=False)
    report_step_time(seconds)


def measure(args, mode: str, table: Path) -> dict:
    command = [sys.executable, __file__, "--mode", mode, "--table", str(table)]
    for name in ["samples", "genes", "seed", "threads"]:
        command += [f"--{name}", str(getattr(args, name))]
    return measure_child(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["blocked", "whole"])
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        run_child(args, Path(args.table))
        return
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in args.modes:
            path = Path(scratch) / f"{mode}.tsv"
            result = measure(args, mode, path)
            tables[mode] = pd.read_csv(path, sep="\t")
            rows.append(
                {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "mode": mode,
                    "samples": args.samples,
                    "genes": args.genes,
                    "threads": args.threads,
                    **result,
                }
            )
            print(pd.Series(rows[-1]).to_string(), flush=True)
    if len(tables) == 2:
        blocked, whole = tables["blocked"], tables["whole"]
        columns = ["own_r", "best_other_r", "median_r"]
        same = np.allclose(blocked[columns], whole[columns], rtol=0, atol=1e-12, equal_nan=True)
        print(f"blocked tables equal the whole-matrix ones (to 1e-12): {same}")
        for row in rows:
            row["equal"] = same
    append_rows(OUT, rows)


if __name__ == "__main__":
    main()
