"""A throwaway PostgreSQL server for tests: `initdb` in a temporary folder, `postgres` on a free
loopback port, stopped and deleted afterwards. Needs no root, no system service, no network.

The binaries come from the `pgserver` wheel (PostgreSQL 16 built for manylinux, installed by pip
with the test extras), or else from a system install (`pg_ctl` on PATH, /usr/lib/postgresql/*/bin).
PostgreSQL refuses to run as root, so under root (CI here) the data folder is handed to `nobody`
and the server process runs as that user; the tests themselves still run as root.

    with start_postgres() as pg:
        url = pg.create_database("mytest")   # postgresql+psycopg://postgres@127.0.0.1:PORT/mytest
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NOBODY = "nobody"


def find_bin_dir() -> Path | None:
    """The folder holding initdb and postgres, or None when no PostgreSQL is installed."""
    candidates = []
    spec = importlib.util.find_spec("pgserver")  # found, not imported: its import sets up lock files
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p, "pginstall", "bin") for p in spec.submodule_search_locations]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One running server; `url(db)` gives a SQLAlchemy URL, `stop()` ends it and removes its files."""

    def __init__(self, bin_dir: Path | None = None, *, timeout: float = 30.0) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        if self.bin_dir is None:
            raise FileNotFoundError(
                "no PostgreSQL binaries: pip install pgserver (the test extras) or a system postgres"
            )
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._as_user: dict = {}
        root = os.geteuid() == 0
        # As root, under /tmp: the server's user must reach the folder (pytest's tmp dirs are 0700 root's).
        self.tmp = Path(tempfile.mkdtemp(prefix="tb-pg-", dir="/tmp" if root else None))
        self.data = self.tmp / "data"
        self.log_path = self.tmp / "postgres.log"
        if root:
            entry = pwd.getpwnam(NOBODY)
            os.chown(self.tmp, entry.pw_uid, entry.pw_gid)
            self._as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self._env.update(LC_ALL="C", LANG="C", TZ="UTC")
        try:
            if root and not self._runnable():
                self._copy_binaries()
            self._initdb()
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _runnable(self) -> bool:
        """Whether the server's user can run the binaries where they are (a checkout under a 0700
        home folder, say, is out of its reach)."""
        try:
            self._run("postgres", "--version")
            return True
        except (OSError, RuntimeError):
            return False

    def _copy_binaries(self) -> None:
        """A copy of the installation inside the temporary folder (about 35 MB), in the same layout:
        pgserver's programs find their libraries by a relative path, `$ORIGIN/../../../pgserver.libs`."""
        install = self.bin_dir.parent
        if not (install / "share").is_dir():
            raise RuntimeError(
                f"user {NOBODY!r} cannot run {self.bin_dir}/postgres, and it is not a copyable "
                "installation (bin, lib and share side by side)"
            )
        copy = self.tmp / install.parent.name / install.name
        shutil.copytree(install, copy, symlinks=True, ignore=shutil.ignore_patterns("include"))
        libs = install.parent.parent / f"{install.parent.name}.libs"  # where auditwheel put the shared libraries
        if libs.is_dir():
            shutil.copytree(libs, self.tmp / libs.name, symlinks=True)
        self.bin_dir = copy / "bin"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            env=self._env,
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            **self._as_user,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}")

    def _initdb(self) -> None:
        # --no-sync: a test server's files need not survive a power cut, and fsync is the slow part.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )

    def _start(self, timeout: float) -> None:
        for _attempt in range(3):  # the free port can be taken between choosing and binding it
            self.port = _free_port()
            with open(self.log_path, "ab") as log:  # a file, never an unread pipe
                self.proc = subprocess.Popen(
                    [
                        str(self.bin_dir / "postgres"),
                        "-D",
                        str(self.data),
                        "-p",
                        str(self.port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "unix_socket_directories=",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=100",
                        "-c",
                        "shared_buffers=32MB",
                    ],
                    env=self._env,
                    cwd=self.tmp,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._as_user,
                )
            if self._wait_ready(timeout):
                return
            if "could not bind" not in self.log():
                break
        raise RuntimeError(f"postgres did not start in {timeout} s:\n{self.log()}")

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: roll back open sessions, exit
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def start_postgres(**kwargs) -> PostgresServer:
    return PostgresServer(**kwargs)


if __name__ == "__main__":  # python tests/postgres_server.py: start one, time it, stop it
    started = time.perf_counter()
    with start_postgres() as pg:
        print(f"{pg.bin_dir}: up at {pg.url()} in {time.perf_counter() - started:.2f} s")
        stopping = time.perf_counter()
    print(f"stopped in {time.perf_counter() - stopping:.2f} s")
