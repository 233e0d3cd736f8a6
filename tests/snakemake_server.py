"""Runs Snakemake's command line without paying its start-up each time.

The process imports Snakemake and the libraries the workflow's parse-time checks use, once,
then reads one JSON request a line from stdin: ``{"args": [...], "cwd": ..., "env": {...},
"stdout": path, "stderr": path}``. Each request is run in a fork of this process, exactly
as ``python -m snakemake ARGS`` would run it in ``cwd`` (its output written to the two
files), and answered with a line ``{"returncode": N}``. The fork starts from the imported
libraries but not from the workflow's own package (``ifnsig`` is imported afresh from the
workflow the Snakefile names), and nothing one run changes reaches the next.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import runpy
import sys
import traceback


def warm_up() -> None:
    """Import what every run imports; the workflow package itself is forgotten again."""
    import anndata  # noqa: F401  # ifnsig.stages imports its libraries on first use
    import scipy.stats  # noqa: F401
    import snakemake.cli  # noqa: F401
    import snakemake.executors.dryrun  # noqa: F401
    import snakemake.executors.local  # noqa: F401

    import ifnsig.stages  # noqa: F401
    import ifnsig.validation  # noqa: F401

    for name in [name for name in sys.modules if name == "ifnsig" or name.startswith("ifnsig.")]:
        del sys.modules[name]


def exit_code(error: SystemExit) -> int:
    """The interpreter's own handling of ``sys.exit(value)`` at top level."""
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def run(request: dict) -> None:
    """In the fork: ``python -m snakemake`` with the request's arguments; never returns."""
    code = 1
    try:
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
            os.close(out)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # As for ``python -m``: the working directory first on the path.
        sys.path[0] = os.getcwd()
        sys.argv = ["snakemake", *request["args"]]
        try:
            runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as error:
            code = exit_code(error)
        except BaseException:  # an uncaught error ends the interpreter so
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
        logging.shutdown()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    warm_up()
    answers = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run(request)
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
