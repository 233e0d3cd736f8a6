"""Writing a run's ``normalized.h5ad`` again, timed: on threads, and with other gzip filters.

Reads X and every layer of the first ``--genes`` genes of the file, then writes them with
:func:`ifnsig.data.write_h5ad` once per value of ``--threads``, printing the wall and CPU
time of each write and how much of that CPU was spent inside zlib (which runs outside
h5py's lock, so on threads at once: what ``threads`` can spread over the cores). With
``--filters LAYER``, that layer alone is written with h5py at gzip levels 1 and 4, with and
without the shuffle filter, with the file's own chunks: the CPU, size and read-back CPU of
each. Prints the 1-minute load average beside each figure.

Examples
--------
python benchmarks/bench_h5ad_write.py <run>/cohort_4000/results/data/normalized.h5ad \
    --genes 5000 --threads 1 2 1 2
python benchmarks/bench_h5ad_write.py <run>/cohort_4000/results/data/normalized.h5ad \
    --filters layers/vst layers/counts
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import zlib
from pathlib import Path

import h5py


def timed_writes(path: Path, n_genes: int | None, threads: list[int], out: Path) -> None:
    import anndata as ad
    from anndata.io import read_elem

    from ifnsig import data

    genes = slice(None, n_genes)
    with h5py.File(path, "r") as handle:
        var = read_elem(handle["var"]).iloc[genes]
        adata = ad.AnnData(
            X=handle["X"][:, genes],
            obs=read_elem(handle["obs"]),
            var=var,
            uns=read_elem(handle["uns"]),
        )
        for name in handle["layers"]:
            adata.layers[name] = handle["layers"][name][:, genes]
    in_zlib: list[float] = []
    compress = zlib.compress

    def counted(buffer, level=-1):
        start = time.thread_time()
        try:
            return compress(buffer, level)
        finally:
            in_zlib.append(time.thread_time() - start)

    zlib.compress = counted
    try:
        for n in threads:
            in_zlib.clear()
            cpu, wall = time.process_time(), time.time()
            data.write_h5ad(adata, out, threads=n)
            wall, cpu = time.time() - wall, time.process_time() - cpu
            print(
                f"{adata.n_obs} x {adata.n_vars}, threads={n}: {wall:.1f} s wall, {cpu:.1f} s "
                f"CPU, {sum(in_zlib):.1f} s of it in zlib, {out.stat().st_size / 2**20:.0f} MB, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        zlib.compress = compress


def timed_filters(path: Path, layers: list[str], out: Path) -> None:
    with h5py.File(path, "r") as handle:
        for name in layers:
            stored = handle[name]
            matrix = stored[()]
            size = stored.id.get_storage_size() / 2**20
            print(f"{name} {stored.shape} {stored.dtype}, chunks {stored.chunks}: {size:.0f} MB")
            for shuffle in (False, True):
                for level in (1, 4):
                    cpu = time.process_time()
                    with h5py.File(out, "w") as target:
                        target.create_dataset(
                            "x",
                            data=matrix,
                            chunks=stored.chunks,
                            compression="gzip",
                            compression_opts=level,
                            shuffle=shuffle,
                        )
                    cpu = time.process_time() - cpu
                    read = time.process_time()
                    with h5py.File(out, "r") as target:
                        target["x"][()]
                    read = time.process_time() - read
                    print(
                        f"  gzip {level}, shuffle {shuffle}: {cpu:.1f} s CPU, "
                        f"{out.stat().st_size / 2**20:.0f} MB, read {read:.1f} s CPU, "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("h5ad", type=Path, help="a run's results/data/normalized.h5ad")
    parser.add_argument("--genes", type=int, default=None, help="the first N genes (all)")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--filters", nargs="*", default=None, metavar="LAYER")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "written.h5"
        if args.filters:
            timed_filters(args.h5ad, args.filters, out)
        else:
            timed_writes(args.h5ad, args.genes, args.threads, out)


if __name__ == "__main__":
    main()
