"""``python -m snakemake`` with the SLURM executor plugin's job status checks at most
``SLURM_TEST_MAX_CHECK_SECONDS`` (default 2) apart, for the test cluster.

snakemake-executor-plugin-slurm 2.x waits ``--slurm-init-seconds-before-status-checks``
after a check that saw a job end and 10 s more after each check that saw none (up to
180 s), and has no setting to cap that: on the test cluster, whose jobs last seconds, a
job of 30 s was only seen to end after 64 s. Here the plugin's interval (the property its
executor sets and sleeps on) is capped; what is submitted, and how each status is read, is
the plugin's own.
"""

from __future__ import annotations

import os
import runpy

import snakemake_executor_plugin_slurm as slurm

CAP_S = float(os.environ.get("SLURM_TEST_MAX_CHECK_SECONDS", "2"))
interval = slurm.Executor.next_seconds_between_status_checks


def capped(executor) -> float:
    return min(interval.fget(executor), CAP_S)


slurm.Executor.next_seconds_between_status_checks = property(capped, interval.fset)

if __name__ == "__main__":
    runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
