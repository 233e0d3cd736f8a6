"""Puts this workflow's own ``ifnsig`` first on ``sys.path``, ahead of any installed copy.

Snakemake appends a script's folder to ``sys.path``, so without this an ``ifnsig``
installed from another checkout would be imported instead of the one beside these scripts.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
