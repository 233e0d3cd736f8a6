"""BlockedInference against the dense DESeq2Inference on every expressed airway gene.

Airway (Himes 2014, ``../shared/data/airway``), ``~ cell + dex``, the blocked path forced
(4 cell lines), checked with the criteria of ``tests/test_blocked_inference.py`` (LFC, stat,
lfcSE, dispersions, Cook's distances, padj calls). The test suite runs the same comparison on
a seeded subset of the genes (``AIRWAY_GENES`` there); this runs it on all of them, or on
``--genes N``. Exit status 1 when the paths differ.

```bash
python benchmarks/airway_blocked_inference.py              # every expressed gene
python benchmarks/airway_blocked_inference.py --genes 3000 # the suite's subset
```
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_blocked_inference import airway_pipelines, assert_pipeline_equivalent  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=None, help="seeded subset (default: all)")
    args = parser.parse_args()
    started = time.monotonic()
    res0, res1, inf = airway_pipelines(args.genes)
    n_genes = res0[0].n_vars
    wall = time.monotonic() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    try:
        assert set(inf.paths.values()) == {"blocked"}, inf.paths
        assert_pipeline_equivalent(res0, res1)
    except AssertionError as err:
        print(f"{n_genes} genes: paths differ: {err}")
        return 1
    print(f"{n_genes} genes: blocked = dense ({wall:.0f} s wall, {cpu:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
