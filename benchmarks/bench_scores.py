"""Time each IFN-score method on a large cohort held in memory, and print a table.

The cohort is synthetic (gamma-distributed normalized counts and their log2 as VST, one
sixth healthy controls) with the gene names of the package's simulator, so every shipped
signature matches. Each method scores the signatures of ``config/config.yaml`` (plus the
IFN-gamma-biased set) through :func:`ifnsig.scores.score_samples`, positivity included;
signature matching is timed on its own. ssGSEA (gseapy) is timed on ``--ssgsea-samples``
samples and its time for the full cohort extrapolated linearly (it scores each sample on
its own), because the full run takes minutes.

Example
-------
python benchmarks/bench_scores.py --samples 10000 --genes 15000
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import yaml

from ifnsig import genesets, scores
from ifnsig.settings import aliases_file, score_gene_set_files
from ifnsig.simulate import gene_names
from ifnsig.validation import validate_config

REPO = Path(__file__).resolve().parents[1]


def synthetic_cohort(n_samples: int, n_genes: int, seed: int) -> ad.AnnData:
    """Samples x genes with ``normalized`` and ``vst`` layers, one sixth controls."""
    rng = np.random.default_rng(seed)
    genes, _ = gene_names(n_genes)
    n_controls = n_samples // 6
    obs = pd.DataFrame(
        {
            "subject": [f"S{i}" for i in range(n_samples)],
            "group": ["control"] * n_controls + ["patient"] * (n_samples - n_controls),
            "timepoint": "baseline",
            "size_factor": rng.lognormal(0, 0.2, n_samples),
        },
        index=[f"X{i}" for i in range(n_samples)],
    )
    normalized = rng.gamma(2.0, 50.0, (n_samples, len(genes)))
    adata = ad.AnnData(obs=obs, var=pd.DataFrame({"symbol": genes}, index=genes))
    adata.layers["normalized"] = normalized
    adata.layers["vst"] = np.log2(normalized + 1)
    return adata


def timed(function, *args, **kwargs) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--genes", type=int, default=15000)
    parser.add_argument("--ssgsea-samples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate_config(config)
    adata = synthetic_cohort(args.samples, args.genes, args.seed)
    rows = []
    wall, cpu, (matched, _) = timed(
        genesets.matched_signatures,
        scores.scored_signatures(config["scores"]),
        adata.var["symbol"].astype(str),
        score_gene_set_files(config),
        aliases_file(),
    )
    rows.append(("match signatures", args.samples, wall, cpu, ""))
    reference = scores.reference_mask(adata.obs, "controls", "control", "baseline")
    for method in scores.METHODS:
        subset = adata
        if method == "ssgsea" and args.ssgsea_samples < args.samples:
            subset = adata[: args.ssgsea_samples].copy()
        wall, cpu, _ = timed(
            scores.score_samples,
            subset,
            matched,
            [method],
            reference[: subset.n_obs],
            seed=args.seed,
            threads=args.threads,
        )
        note = ""
        if subset.n_obs < args.samples:
            factor = args.samples / subset.n_obs
            note = f"measured on {subset.n_obs}; x{factor:g} = {wall * factor:.0f} s extrapolated"
        rows.append((method, subset.n_obs, wall, cpu, note))
    table = pd.DataFrame(rows, columns=["step", "samples", "wall_s", "cpu_s", "note"])
    default = table["step"].isin(["match signatures", *config["scores"]["methods"]])
    print(
        f"{args.samples} samples x {args.genes} genes, {len(matched)} signatures "
        f"({', '.join(matched)}), threads {args.threads}\n"
    )
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(
        f"\nconfigured methods ({', '.join(config['scores']['methods'])}) with matching: "
        f"{table.loc[default, 'wall_s'].sum():.2f} s wall; peak memory "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
