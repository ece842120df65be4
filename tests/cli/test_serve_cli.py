"""`metastasis serve`: a bad checkpoint is one line; a good one answers on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from metastasis.cli import main
from metastasis.engine.trainer import RunResult


def test_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metastasis serve: error:") and "no such checkpoint" in err
    assert len(err.splitlines()) == 1


def test_serve_answers_on_localhost_with_the_key_from_the_environment(
    trained_run: RunResult,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "METASTASIS_API_KEY": "env-key"}
    cmd = [sys.executable, "-m", "metastasis", "serve", "--checkpoint", str(trained_run.run_dir)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        health = None
        while health is None:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no answer from metastasis serve"
            try:
                health = httpx.get(url + "/healthz", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health["api_key_required"] is True
        assert httpx.get(url + "/v1/model").status_code == 401
        r = httpx.get(url + "/v1/model", headers={"X-API-Key": "env-key"})
        assert r.status_code == 200 and r.json()["architecture"] == "baseline-cnn"
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "Choose patches" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(url + "/static/app.js").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
