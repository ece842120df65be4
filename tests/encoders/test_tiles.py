"""`embed --slides`: a slide's tissue tiles embedded into a store, with their coordinates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from tests.encoders.tiny_vit import TINY, TINY_KWARGS
from tests.slides.conftest import mosaic, write_pyramid

from metastasis.cli import main
from metastasis.encoders import store as store_module
from metastasis.encoders.backbone import build_encoder
from metastasis.encoders.embed import resolve_encoder
from metastasis.encoders.store import preprocessing_of
from metastasis.encoders.tiles import TILES_CSV, TILING_JSON, SlideEmbedResult, embed_slides
from metastasis.transforms.presets import PCAM_MPP

TILE = 32  # the tiny ViT's input: tiles of 32 px at PCam's 0.972 um/px (the slide's level 1)


def _slide(path: Path, seed: int) -> Path:
    """3 x 4 cells of 96 px at 0.972 um/px (tissue in 2 x 2 of them), level 0 twice as fine."""
    tissue = np.zeros((3, 4), bool)
    tissue[1:3, 1 + seed % 2 : 3 + seed % 2] = True
    img = mosaic(3, 4, tissue, np.zeros_like(tissue), seed=seed)
    return write_pyramid(path, img.repeat(2, 0).repeat(2, 1), PCAM_MPP / 2, levels=2)


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slides")
    for k in range(2):
        _slide(folder / f"s{k}.tif", seed=k)
    return folder


def _embed(paths: Path, weights: Path, cache: Path) -> SlideEmbedResult:
    return embed_slides(
        paths, TINY, weights, cache_dir=cache, model_kwargs=TINY_KWARGS, input_size=TILE,
        tile_mpp=PCAM_MPP, batch_size=16, progress=False,
    )  # fmt: skip


def test_tiles_are_embedded_as_a_direct_forward_pass_with_their_coordinates(
    slides: Path, tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHUNK", 20)  # 2 chunks: tiles read across chunk ends
    result = _embed(slides / "s0.tif", tiny_weights, tmp_path)
    store = result.stores["s0"]
    table = pd.read_csv(store.path / TILES_CSV)
    assert len(table) == len(store) == store.embeddings.shape[0] > 20  # 2 chunks at least
    assert (table["tissue"] >= 0.25).all() and (table["slide"] == "s0").all()
    # level-0 pixels: a 32 px tile at 0.972 um/px is 64 px of level 0 (0.486 um/px)
    np.testing.assert_allclose(table["x"], table["col"] * 64)
    np.testing.assert_allclose(table["y_um"], table["row"] * 64 * PCAM_MPP / 2, atol=0.01)
    assert table["row"].between(3, 8).all() and table["col"].between(3, 8).all()  # cells 1..2
    level1 = tifffile.TiffFile(slides / "s0.tif").pages[1].asarray()  # read independently
    tiles = np.stack(
        [level1[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
         for r, c in zip(table["row"], table["col"])]
    )  # fmt: skip
    spec, weights = resolve_encoder(TINY, tiny_weights, TINY_KWARGS, TILE)
    with torch.inference_mode():
        direct = build_encoder(spec, weights)(preprocessing_of(spec)(torch.from_numpy(tiles)))
    np.testing.assert_allclose(store.embeddings, direct.numpy(), atol=1e-5)
    tiling = json.loads((store.path / TILING_JSON).read_text())
    assert tiling["reader_used"] == "tifffile" and tiling["geometry"]["scale"] == 1.0


def _never() -> torch.nn.Module:
    raise AssertionError("the encoder was built although the store exists")


def test_the_store_is_reused_and_invalidated_when_the_slide_changes(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slide = _slide(tmp_path / "a.tif", seed=0)
    first = _embed(slide, tiny_weights, tmp_path / "cache").stores["a"]
    monkeypatch.setattr("metastasis.encoders.tiles.build_encoder", lambda *a: _never())
    again = _embed(slide, tiny_weights, tmp_path / "cache").stores["a"]
    assert again.path == first.path
    monkeypatch.undo()
    _slide(slide, seed=1)  # rewritten: other tissue
    os.utime(slide, ns=(1, 1))
    changed = _embed(slide, tiny_weights, tmp_path / "cache").stores["a"]
    assert changed.path != first.path
    assert not pd.read_csv(changed.path / TILES_CSV)[["row", "col"]].equals(
        pd.read_csv(first.path / TILES_CSV)[["row", "col"]]
    )


def test_shards_split_the_slides_and_together_equal_the_whole(
    slides: Path, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = _embed(slides, tiny_weights, tmp_path / "whole")
    assert sorted(whole.stores) == ["s0", "s1"]
    parts = {}
    for i in range(2):
        args = ["embed", "--slides", str(slides), "--encoder", TINY, "--weights",
                str(tiny_weights), "--input-size", str(TILE), "--tile-mpp", str(PCAM_MPP),
                "--shard", f"{i}/2", "--cache-dir", str(tmp_path / "p"),
                "--no-progress"]  # fmt: skip
        for k, v in TINY_KWARGS.items():
            args += ["--model-kwargs", f"{k}={v}"]
        assert main(args) == 0
        parts[i] = capsys.readouterr().out
    assert "s0" in parts[0] and "s1" not in parts[0] and "s1" in parts[1]
    for sid, store in whole.stores.items():
        part = next((tmp_path / "p" / "embeddings").glob(f"*-{sid}-*"))
        np.testing.assert_allclose(np.load(part / "embeddings.npy"), store.embeddings, atol=1e-6)
        assert (part / TILES_CSV).read_text() == (store.path / TILES_CSV).read_text()
