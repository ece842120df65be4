"""A real uvicorn server on a free port of 127.0.0.1, serving the tiny trained model.

It needs an API key and has small limits, so that every refusal can be reached with small
files; its run folder holds a MODEL_CARD.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.local_server import serve_locally

from metastasis.engine.trainer import RunResult
from metastasis.serve.app import create_app
from metastasis.serve.uploads import Limits

API_KEY = "test-key-0123"
LIMITS = Limits(
    max_upload_bytes=400_000,
    max_images=6,
    max_image_pixels=200 * 200,
    max_zip_bytes=1_000_000,
    max_zip_ratio=100.0,
)
CARD = "# Model card\n\nA tiny test model. Research use only.\n"


@dataclass
class LiveServer:
    url: str
    run_dir: Path

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=60
        )


@pytest.fixture(scope="session")
def served_run(trained_run: RunResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("served") / "run"
    run_dir.mkdir()
    for name in ("checkpoint.pt", "metrics.json"):
        shutil.copy(Path(trained_run.run_dir) / name, run_dir / name)
    (run_dir / "MODEL_CARD.md").write_text(CARD, encoding="utf-8")
    return run_dir


@pytest.fixture(scope="session")
def live_server(served_run: Path) -> Iterator[LiveServer]:
    app = create_app(served_run, api_key=API_KEY, limits=LIMITS, max_batch=16, max_wait_ms=5)
    with serve_locally(app) as url:
        yield LiveServer(url, served_run)
