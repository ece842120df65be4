"""Running `metastasis` commands as a user does: in subprocesses, several at once, and the
one-line error they must end with when something cannot be done."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass
class Cli:
    args: list[str]
    rc: int
    stdout: str
    stderr: str

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.stdout + self.stderr, self.stderr


@dataclass
class Started:
    args: list[str]
    proc: subprocess.Popen[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]


def start_cli(commands: list[list[str]], cache: Path) -> list[Started]:
    """Start several `metastasis` commands at once (they only read the data and the cache).
    Output goes to temporary files, so no command can block on a full pipe."""
    # one thread each: several commands share the cores
    env = {**os.environ, "METASTASIS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    started = []
    for args in commands:
        # closed by finish_cli, once the command has ended
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
        cmd = [sys.executable, "-m", "metastasis", *args]
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        started.append(Started(args, proc, out, err))
    return started


def finish_cli(started: list[Started], timeout: float = 300) -> list[Cli]:
    """Wait for each command; one that hangs is killed and reported as such."""
    done = []
    for s in started:
        try:
            s.proc.wait(timeout=timeout)
            hung = ""
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()
            hung = f"\n(killed after {timeout} s: it hung)"
        texts = []
        for f in (s.stdout, s.stderr):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "backslashreplace"))
            f.close()
        done.append(Cli(s.args, s.proc.returncode, texts[0], texts[1] + hung))
    return done


def run_cli(commands: list[list[str]], cache: Path, timeout: float = 300) -> list[Cli]:
    return finish_cli(start_cli(commands, cache), timeout)


def assert_one_error_line(cli: Cli, command: str, file: Path | str, problem: str) -> None:
    """Exit status 2 and exactly one line on stderr: the command, the file, the problem."""
    cli.assert_no_traceback()
    assert cli.rc == 2, (cli.rc, cli.stdout, cli.stderr)
    lines = cli.stderr.splitlines()
    assert len(lines) == 1, cli.stderr
    assert lines[0].startswith(f"metastasis {command}: error: {file}: "), lines[0]
    assert re.search(problem, lines[0]), lines[0]
