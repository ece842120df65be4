"""A real slides output folder (``run_slides`` on a tiny pyramidal TIFF with a tiny random
model, and a file that is no slide), served by the viewer on a real uvicorn on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.local_server import serve_locally
from tests.slides.conftest import mosaic, random_bundle, slide_at_level0, write_pyramid

from metastasis.checkpoint import save_checkpoint
from metastasis.transforms.presets import PCAM_MPP
from metastasis.viewer.app import create_app

ROWS, COLS = 8, 10  # cells of 96 px at the model's resolution; level 0 is twice as fine


@dataclass
class SlidesRun:
    out: Path
    slide: Path  # the tiny slide: 1920 x 1536 px at level 0, 3 levels, 128 px zlib tiles


@pytest.fixture(scope="session")
def slides_run(tmp_path_factory: pytest.TempPathFactory) -> SlidesRun:
    from metastasis.slides import run_slides

    base = tmp_path_factory.mktemp("viewer")
    tissue = np.zeros((ROWS, COLS), bool)
    tissue[1:7, 1:9] = True
    tumour = np.zeros_like(tissue)
    tumour[2:5, 3:6] = True
    (base / "in").mkdir()
    slide = write_pyramid(base / "in" / "blob.tif",
                          slide_at_level0(mosaic(ROWS, COLS, tissue, tumour, seed=1), 2),
                          PCAM_MPP / 2)  # fmt: skip
    (base / "in" / "broken.tif").write_bytes(b"not a tiff")
    # threshold 0.3 and raw thresholding (no smoothing, seed = grow, one tile): the random
    # model's ~0.5 everywhere makes one lesion of the tissue
    checkpoint = save_checkpoint(base / "checkpoint.pt", random_bundle(threshold=0.3))
    run_slides([base / "in"], checkpoint, base / "out", progress=False, engine="torch",
               lesion_sigma=0, lesion_seed=0.3, min_lesion_tiles=1)  # fmt: skip
    return SlidesRun(base / "out", slide)


@dataclass
class LiveViewer:
    url: str
    run: SlidesRun

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


@pytest.fixture(scope="session")
def live_viewer(slides_run: SlidesRun) -> Iterator[LiveViewer]:
    """The viewer of ``slides_run`` on a free port of 127.0.0.1 (uvicorn in a thread)."""
    app = create_app(slides_run.out)
    try:
        with serve_locally(app) as url:
            yield LiveViewer(url, slides_run)
    finally:
        app.state.viewer.close()
