"""Start a real, throwaway PostgreSQL server for tests, from the installed server binaries
(Debian's packages: /usr/lib/postgresql/<version>/bin/initdb, pg_ctl, ...).

    with PostgresServer() as pg:
        url = pg.url                        # postgresql://keyhouse:...@127.0.0.1:PORT/keyhouse_test
        other = pg.create_database("t1")    # a fresh, empty database on the same server
        pg.pause(); pg.resume()             # an outage: stopped, then started on the same port

The cluster lives in a temporary directory (data, unix socket, log) that is removed on stop().
It listens on 127.0.0.1 on a free port and on a unix socket in that directory, with fsync off
(a test server: fast, nothing to keep). initdb refuses to run as root, so when the tests run as
root the server runs as an unprivileged user (KEYHOUSE_PG_OS_USER, else `postgres`, else
`nobody`) through `runuser`, and the temporary directory is handed to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bindir"]

_START_TIMEOUT_S = 60
_CMD_TIMEOUT_S = 120


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server binaries on this machine."""


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: $KEYHOUSE_PG_BINDIR when set (then no other:
    an explicit choice that lacks the tools means no PostgreSQL), else the newest
    /usr/lib/postgresql/*/bin (Debian), else `pg_config --bindir`, else initdb on PATH."""
    explicit = os.environ.get("KEYHOUSE_PG_BINDIR")
    candidates: list[str] = [explicit] if explicit else _found_bindirs()
    for cand in candidates:
        d = Path(cand)
        if all(os.access(d / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _found_bindirs() -> list[str]:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(out)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    return candidates


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _os_user_for_root() -> str:
    for name in (os.environ.get("KEYHOUSE_PG_OS_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root and no unprivileged user (postgres/nobody) exists")


class PostgresServer:
    """A throwaway PostgreSQL cluster. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        *,
        dbname: str = "keyhouse_test",
        user: str = "keyhouse",
        bindir: Path | None = None,
        max_connections: int = 200,
    ) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries not found (apt-get install postgresql, "
                "or set KEYHOUSE_PG_BINDIR)"
            )
        self.bindir = found
        self.dbname = dbname
        self.user = user
        self.password = secrets.token_urlsafe(18)
        self.max_connections = max_connections
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self._run_as: str | None = _os_user_for_root() if os.geteuid() == 0 else None
        self._started = False
        self._admin: Any = None  # a psycopg connection to the maintenance database, once used
        self._admin_lock = threading.Lock()

    # -- paths and commands ---------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "sock"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "postgres.log"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        if self._run_as:
            cmd = ["runuser", "-u", self._run_as, "--", *cmd]
        return cmd

    def _run(self, tool: str, *args: str, timeout: float = _CMD_TIMEOUT_S) -> str:
        proc = subprocess.run(
            self._cmd(tool, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmpdir,
            env={**os.environ, "LC_ALL": "C", "PGTZ": "UTC"},
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}" + self._log_tail()
            )
        return proc.stdout

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return "\n--- postgres.log ---\n" + "\n".join(lines) if lines else ""

    # -- URLs -----------------------------------------------------------------------------
    def url_for(self, dbname: str) -> str:
        assert self.port is not None, "server not started"
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        """postgresql:// URL of the database created at start (TCP on 127.0.0.1)."""
        return self.url_for(self.dbname)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> str:
        if self._started:
            return self.url
        self.tmpdir = Path(tempfile.mkdtemp(prefix="keyhouse-pg-"))
        try:
            self.socket_dir.mkdir()
            pwfile = self.tmpdir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self._run_as:
                entry = pwd.getpwnam(self._run_as)
                for p in (self.tmpdir, self.socket_dir, pwfile):
                    os.chown(p, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            )
            pwfile.unlink()
            last_error: Exception | None = None
            for _attempt in range(3):  # a free port can be taken between probe and bind
                self.port = _free_port()
                try:
                    self._pg_ctl_start()
                except RuntimeError as exc:
                    last_error = exc
                    continue
                break
            else:
                raise RuntimeError(f"PostgreSQL did not start: {last_error}")
            self._started = True
            atexit.register(self.stop)
            self.create_database(self.dbname)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _pg_ctl_start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.socket_dir} "
            f"-c max_connections={self.max_connections} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c timezone=UTC"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            "-o",
            opts,
            "start",
            timeout=_START_TIMEOUT_S + 30,
        )

    # -- an outage: the same server stopped, then started again ----------------------------
    def pause(self, mode: str = "fast") -> None:
        """Stop the server but keep its data directory and port, for :meth:`resume`.

        ``fast`` (the default) ends every session with "terminating connection due to
        administrator command" first, as a normal shutdown does; ``immediate`` does not."""
        assert self._started, "server not started"
        with self._admin_lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop")

    def resume(self) -> None:
        """Start the server :meth:`pause` stopped: same data, same port, same URL."""
        assert self._started, "server not started"
        self._pg_ctl_start()

    def _admin_sql(self, statement: str) -> bool:
        """Run one statement on the server's maintenance database over a connection kept open
        for it (a test suite creates and drops hundreds of databases: a pair of processes each
        through ``runuser`` cost more than the statement). False when psycopg is missing."""
        try:
            import psycopg
        except ImportError:
            return False
        with self._admin_lock:
            if self._admin is None:
                self._admin = psycopg.connect(
                    self.url_for("postgres"), autocommit=True, connect_timeout=10
                )
            self._admin.execute(statement.encode())
        return True

    def create_database(self, dbname: str, *, template: str | None = None) -> str:
        """Create a database on this server and return its URL: empty, or a copy of the
        database ``template`` (which nobody may be connected to meanwhile)."""
        for name in (dbname, template):
            if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
                raise ValueError(f"unsafe database name {name!r}")
        statement = f'CREATE DATABASE "{dbname}"'
        if template is not None:
            statement += f' TEMPLATE "{template}"'
        if not self._admin_sql(statement):
            extra = ["-T", template] if template is not None else []
            self._run("createdb", *self._client_args(), *extra, dbname)
        return self.url_for(dbname)

    def drop_database(self, dbname: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", dbname):
            raise ValueError(f"unsafe database name {dbname!r}")
        if not self._admin_sql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'):
            self._run("dropdb", *self._client_args(), "--force", "--if-exists", dbname)

    def _client_args(self) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user]

    def stop(self) -> None:
        """Stop the server (if it runs) and delete the temporary directory. Idempotent."""
        with self._admin_lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()
        if self._started:
            self._started = False
            with contextlib.suppress(Exception):
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                    timeout=60,
                )
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
