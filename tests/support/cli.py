"""``issuer ARGS`` run in the test process: the console script's own function
(``issuer.cli.main``) with the environment, working directory, standard streams and exit status
a subprocess would have, minus the interpreter start (about a second of CPU each, for Python
and SQLAlchemy's imports: the end-to-end tiers ran some hundred of them to set up their stacks).

What stays a subprocess: ``serve`` (refused here), a drill that runs (``Stack.cli`` starts
``drill`` as a process: a long-running load generator; its one-line refusals of bad input run
here), and the tests where the console script's cold start is the subject
(tests/issuer/test_cli.py ``_bare``).

The environment and working directory are the process's own, so calls are serialised (a lock)
and both are restored afterwards; every SQLAlchemy engine the command made is disposed, as the
end of a process would close its connections (a PostgreSQL database can then be dropped). A
warning the command logs reaches its stderr, as Python's last-resort handler writes it in a
process where logging is not configured; an uncaught exception is a traceback and status 1.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

import issuer.engines
from issuer import cli

_LOCK = threading.Lock()


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _working_directory(cwd: Path) -> Iterator[None]:
    saved = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved)


@contextlib.contextmanager
def _engines_disposed() -> Iterator[None]:
    """Dispose, at the end, every engine ``issuer.engines`` creates meanwhile."""
    made: list[Engine] = []
    create = issuer.engines.create_engine

    def recording(*args: Any, **kwargs: Any) -> Engine:
        engine = create(*args, **kwargs)
        made.append(engine)
        return engine

    issuer.engines.create_engine = recording  # type: ignore[assignment]
    try:
        yield
    finally:
        issuer.engines.create_engine = create
        for engine in made:
            engine.dispose()


@contextlib.contextmanager
def _streams(stdin: str) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    last_resort = logging.StreamHandler(err)  # what an unconfigured process prints
    last_resort.setLevel(logging.WARNING)
    root = logging.getLogger()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    root.addHandler(last_resort)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        root.removeHandler(last_resort)
        sys.stdin = saved_stdin


def run_issuer(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``issuer ARGS`` with exactly ``env`` as its environment, in ``cwd``, ``input`` on stdin."""
    if list(args[:1]) == ["serve"]:
        raise ValueError("`issuer serve` runs as a process, not in the test's")
    with (
        _LOCK,
        _environment(env),
        _working_directory(cwd),
        _engines_disposed(),
        _streams(input or "") as (out, err),
    ):
        argv, sys.argv = sys.argv, [str(Path(sys.executable).parent / "issuer"), *args]
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, int | None):
                err.write(f"{exc.code}\n")
        except Exception:
            traceback.print_exc(file=err)
            code = 1
        finally:
            sys.argv = argv
    return subprocess.CompletedProcess(["issuer", *args], code, out.getvalue(), err.getvalue())
