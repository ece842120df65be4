"""Fixtures for the search tests: a throw-away PostgreSQL server and a helper to run the CLI.

The server is Debian's `postgresql` package (initdb/pg_ctl from /usr/lib/postgresql/*/bin, or
on PATH), started on 127.0.0.1 with a free port in a temporary folder and stopped at the end.
As root, it runs as the `postgres` user (initdb refuses root). Without the binaries the tests
that need it are skipped; with METASTASIS_REQUIRE_POSTGRES=1 (CI) they fail instead. Set
METASTASIS_TEST_POSTGRES_URL to use a server of your own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def _server_bin() -> Path | None:
    found = [Path(p) for p in Path("/usr/lib/postgresql").glob("*/bin")]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(on_path).parent)
    for bindir in found:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("METASTASIS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL required (METASTASIS_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of an empty database on a PostgreSQL server started for the session."""
    external = os.environ.get("METASTASIS_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    pytest.importorskip("psycopg2", reason="psycopg2 (the hpo extra) is not installed")
    bindir = _server_bin()
    if bindir is None:
        _unavailable(
            "no PostgreSQL server (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH; "
            "install Debian's `postgresql` package"
        )
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="metastasis-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no `postgres` user to run the server")
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root and `runuser` is missing")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = [str(runuser), "-u", "postgres", "--"]
    port = _free_port()
    data, log = root / "data", root / "server.log"

    def run(*cmd: str) -> None:
        out = subprocess.run([*prefix, *cmd], cwd=root, capture_output=True, text=True)
        if out.returncode != 0:
            text = (out.stderr or out.stdout).strip().splitlines()
            _unavailable(f"`{Path(cmd[0]).name}` failed: {text[-1] if text else out.returncode}")

    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            *["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            *["-w", "-t", "60", "-o"],
            options,
            "start",
        )
        try:
            run(str(bindir / "createdb"), *f"-h 127.0.0.1 -p {port} -U postgres metastasis".split())
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/metastasis"
        finally:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                cwd=root,
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tune_command(demo_data: Path) -> Callable[..., list[str]]:
    """`metastasis tune` on the tiny demo set (1 epoch, batch 64) as a subprocess command."""

    def command(space: Path, *options: str) -> list[str]:
        return _command(demo_data, space, *options)

    return command


def _command(demo: Path, space: Path, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "metastasis",
        "tune",
        "--space",
        str(space),
        "--data",
        str(demo / "train"),
        "--val-data",
        str(demo / "valid"),
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--no-progress",
        *options,
    ]
