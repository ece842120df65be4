"""The REST API on a live server: every accepted format, every refusal, the model, the docs."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests import hostile_corpus as hostile
from tests.helpers import patches, write_image
from tests.serve.conftest import API_KEY, CARD, LIMITS, LiveServer

from metastasis.data.decode import decode_file
from metastasis.inference.explain import gradcam, overlay
from metastasis.inference.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(served_run: Path) -> Predictor:
    """The same checkpoint run directly, to check the service's numbers against."""
    return Predictor.from_checkpoint(served_run)


def _files(*paths: Path) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (p.name, p.read_bytes())) for p in paths]


def _expect(predictor: Predictor, paths: list[Path]) -> np.ndarray:
    arrays = [decode_file(p)[0] for p in paths]
    return predictor.predict_proba(np.stack(arrays))  # type: ignore[arg-type]


def _error(response: object, status: int, *words: str) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert list(body) == ["error"], body
    message = body["error"]
    assert "\n" not in message and message
    for w in words:
        assert w in message, message
    return message


def test_healthz_docs_and_openapi(live_server: LiveServer) -> None:
    with live_server.client(key=None) as c:
        health = c.get("/healthz").json()
        assert health["status"] == "ok" and health["api_key_required"] is True
        assert health["architecture"] == "baseline-cnn"
        docs = c.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = c.get("/openapi.json").json()
    post = spec["paths"]["/v1/predict"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"413", "415", "422", "401"} <= set(post["responses"])


def test_model_description(live_server: LiveServer, predictor: Predictor) -> None:
    with live_server.client() as c:
        m = c.get("/v1/model").json()
    bundle = predictor.bundle
    assert bundle is not None
    assert m["architecture"] == bundle.arch
    assert m["threshold"] == pytest.approx(bundle.threshold)
    assert m["temperature"] == pytest.approx(bundle.temperature)
    assert m["preprocessing"]["input_size"] == 96
    assert m["preprocessing"]["mpp"] == pytest.approx(bundle.preprocessing.mpp)
    assert m["class_names"] == list(bundle.class_names)
    assert m["metrics"] and "roc_auc" in json.dumps(m["metrics"])
    stored = json.loads((live_server.run_dir / "metrics.json").read_text())["val"]
    assert m["validation"]["roc_auc"] == pytest.approx(stored["roc_auc"])
    assert set(m["validation"]["ci95"]["roc_auc"]) >= {"low", "high"}
    assert m["model_card"] == CARD
    assert m["limits"]["max_images"] == LIMITS.max_images


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_each_format_is_predicted_as_predict_does(
    live_server: LiveServer, predictor: Predictor, tmp_path: Path, suffix: str
) -> None:
    path = write_image(tmp_path / f"patch{suffix}", patches(1, seed=5)[0][0])
    with live_server.client() as c:
        body = c.post("/v1/predict", files=_files(path)).json()
    (row,) = body["predictions"]
    expected = float(_expect(predictor, [path])[0])
    assert row["id"] == path.name
    assert row["probability"] == pytest.approx(expected, abs=1e-6)
    assert row["label"] == int(row["probability"] >= row["threshold"])
    assert row["class_name"] == ("tumour" if row["label"] else "normal")
    assert "onnxruntime" in row["engine"]
    t = body["temperature"]
    logit = np.log(row["uncalibrated_probability"] / (1 - row["uncalibrated_probability"]))
    assert row["probability"] == pytest.approx(1 / (1 + np.exp(-logit / t)), abs=1e-5)


def test_several_files_and_a_zip(
    live_server: LiveServer, predictor: Predictor, tmp_path: Path
) -> None:
    images, _ = patches(5, seed=11)
    paths = [write_image(tmp_path / f"p{i}.png", img) for i, img in enumerate(images)]
    expected = _expect(predictor, paths)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in paths:
            zf.write(p, f"slide1/{p.name}")
    with live_server.client() as c:
        multi = c.post("/v1/predict", files=_files(*paths)).json()
        zipped = c.post("/v1/predict", files=[("files", ("batch.zip", buf.getvalue()))]).json()
    assert [r["id"] for r in multi["predictions"]] == [p.name for p in paths]
    assert [r["id"] for r in zipped["predictions"]] == [f"batch.zip/slide1/{p.name}" for p in paths]
    for body in (multi, zipped):
        got = [r["probability"] for r in body["predictions"]]
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_concurrent_requests_each_get_their_own_answers(
    live_server: LiveServer, predictor: Predictor, tmp_path: Path
) -> None:
    images, _ = patches(12, seed=21)
    paths = [write_image(tmp_path / f"c{i}.png", img) for i, img in enumerate(images)]
    expected = dict(zip([p.name for p in paths], _expect(predictor, paths), strict=True))
    groups = [paths[i : i + 2] for i in range(0, 12, 2)] + [paths[:3], paths[9:]]

    def post(group: list[Path]) -> list[dict[str, object]]:
        with live_server.client() as c:
            return c.post("/v1/predict", files=_files(*group)).json()["predictions"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, groups))
    for group, rows in zip(groups, answers, strict=True):
        assert [r["id"] for r in rows] == [p.name for p in group]
        for r in rows:
            assert r["probability"] == pytest.approx(expected[r["id"]], abs=1e-6)


def test_wrong_size_is_refused_unless_resize(live_server: LiveServer, tmp_path: Path) -> None:
    img = np.asarray(Image.fromarray(patches(1, seed=2)[0][0]).resize((128, 128)))
    path = write_image(tmp_path / "big.png", img)
    with live_server.client() as c:
        _error(c.post("/v1/predict", files=_files(path)), 422, "big.png", "128x128", "resize=true")
        ok = c.post("/v1/predict", params={"resize": "true"}, files=_files(path))
    assert ok.status_code == 200 and ok.json()["predictions"][0]["id"] == "big.png"


@pytest.mark.parametrize(
    ("writer", "status", "words"),
    [
        (hostile.greyscale_png, 422, ["mode L"]),
        (hostile.rgba_png, 422, ["mode RGBA"]),
        (hostile.rgb16_tif, 422, ["16-bit"]),
        (hostile.text_named_tif, 415, ["not a PNG, JPEG, TIFF image"]),
        (hostile.truncated_tif, 422, ["unreadable"]),
        (hostile.zero_byte, 422, ["empty"]),
        (hostile.decompression_bomb, 413, ["400000000 pixels", "decompression bomb"]),
    ],
)
def test_refused_images(
    live_server: LiveServer, tmp_path: Path, writer: object, status: int, words: list[str]
) -> None:
    path = writer(tmp_path / "bad.tif")  # type: ignore[operator]
    for resize in ("false", "true"):
        with live_server.client() as c:
            r = c.post("/v1/predict", params={"resize": resize}, files=_files(path))
        _error(r, status, path.name, *words)


def test_refused_requests(live_server: LiveServer, tmp_path: Path) -> None:
    images, _ = patches(LIMITS.max_images + 1, seed=1)
    paths = [write_image(tmp_path / f"n{i}.png", img) for i, img in enumerate(images)]
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    big = [write_image(tmp_path / f"noise{i}.png", noise) for i in range(16)]  # ~28 KB each
    with live_server.client() as c:
        _error(c.post("/v1/predict", files=_files(*paths)), 413, "more than 6 images")
        _error(c.post("/v1/predict", files=_files(*big)), 413, "larger than the limit")
        _error(c.post("/v1/predict", content=b"abc"), 415, "multipart/form-data")
        _error(c.post("/v1/predict", data={"x": "1"}, files=[]), 415, "multipart")
        _error(c.post("/v1/predict", files=[("note", ("", b""))]), 400, "no image files")
        _error(
            c.post("/v1/predict", params={"explain": "maybe"}, files=_files(paths[0])),
            422,
            "explain",
        )


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_refused_zips(live_server: LiveServer, tmp_path: Path) -> None:
    good = write_image(tmp_path / "g.png", patches(1)[0][0]).read_bytes()
    # 300 KB each, compressed about 6:1: 1.2 MB uncompressed in a ~200 KB upload
    filler = np.random.default_rng(0).bytes(50_000) + bytes(250_000)
    cases = [
        (_zip({"../evil.png": good}), 400, "outside the archive"),
        (_zip({"/etc/evil.png": good}), 400, "outside the archive"),
        (_zip({"bomb.png": b"\0" * 900_000}), 413, "zip bomb"),
        (_zip({f"{i}.png": good for i in range(7)}), 413, "more than 6 images"),
        (_zip({f"{i}.png": filler for i in range(4)}), 413, "uncompressed"),
        (b"PK\x03\x04 broken", 400, "not a readable zip"),
    ]
    with live_server.client() as c:
        for data, status, words in cases:
            _error(c.post("/v1/predict", files=[("files", ("up.zip", data))]), status, words)


def test_api_key(live_server: LiveServer, tmp_path: Path) -> None:
    path = write_image(tmp_path / "k.png", patches(1)[0][0])
    with live_server.client(key=None) as c:
        _error(c.post("/v1/predict", files=_files(path)), 401, "API key")
        _error(c.get("/v1/model"), 401, "API key")
        _error(c.get("/v1/model", headers={"X-API-Key": "wrong"}), 401, "API key")
        bearer = c.get("/v1/model", headers={"Authorization": f"Bearer {API_KEY}"})
        assert bearer.status_code == 200
        assert c.get("/healthz").status_code == 200  # liveness needs no key


def _png(data_url: str) -> np.ndarray:
    head, _, payload = data_url.partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload)), formats=["PNG"]))


def test_explain_adds_gradcam_overlays(
    live_server: LiveServer, predictor: Predictor, tmp_path: Path
) -> None:
    images, _ = patches(2, seed=3)
    paths = [write_image(tmp_path / f"e{i}.png", img) for i, img in enumerate(images)]
    with live_server.client() as c:
        rows = c.post("/v1/predict", params={"explain": "true"}, files=_files(*paths)).json()[
            "predictions"
        ]
    assert predictor.bundle is not None
    heat = gradcam(predictor.bundle, images)
    for row, img, h in zip(rows, images, heat, strict=True):
        np.testing.assert_array_equal(_png(row["patch"]), img)
        shown = _png(row["overlay"])
        assert shown.shape == (96, 96, 3) and shown.dtype == np.uint8
        assert np.abs(shown.astype(int) - overlay(img, h).astype(int)).max() <= 1
        assert not np.array_equal(shown, img)


def test_docs_pages_name_only_the_service_s_own_files(live_server: LiveServer) -> None:
    with live_server.client(key=None) as c:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            page = c.get(path)
            assert (
                page.status_code == 200
                and "default-src 'self'" in page.headers["content-security-policy"]
            )
            assert "http://" not in page.text and "https://" not in page.text, path
            for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
                assert c.get(url).status_code == 200, url
