"""slides.evaluation: a hand-made 3-slide run (maps, summaries and annotations written at test
time, no model) measured end to end with known FROC, slide AUC, Dice, categories and kappa; and
one real run (`run_slides` on a tiny pyramidal TIFF) measured through the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.slides.test_annotations import asap_xml, square

from metastasis.cli import main
from metastasis.errors import DataError, OutputError
from metastasis.slides.evaluation import evaluate_slides

STEP = 100.0  # level-0 px per cell; at 1 um/px a cell is 100 um


def write_slide(out: Path, sid: str, peaks: dict[tuple[int, int], float], category: str) -> None:
    """A slide folder as `metastasis slides` writes it: a 20 x 20 map of zeros with ``peaks``."""
    d = out / sid
    d.mkdir(parents=True)
    prob = np.zeros((20, 20), np.float32)
    for (r, c), p in peaks.items():
        prob[r, c] = p
    np.save(d / "probability.npy", prob)
    meta = {"shape": [20, 20], "cell_origin_level0": [0.0, 0.0], "step_level0": STEP, "mpp": 1.0,
            "threshold": 0.5}  # fmt: skip
    (d / "probability.json").write_text(json.dumps(meta))
    summary = {"slide": sid, "complete": True, "category": category, "largest_diameter_mm": 1.0,
               "category_cutoffs_mm": {"itc": 0.2, "micro": 2.0}}  # fmt: skip
    (d / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Slide A: lesion 1 (700 x 300 um) hit twice (0.9, 0.6), lesion 2 missed, an ITC lesion
    hit (0.8), a FP (0.7); slide B: its lesion hit at 0.4, a FP (0.95); slide C, normal: FPs
    0.5 and 0.3. The same case as tests/metrics/test_froc.py, now through maps and polygons."""
    root = tmp_path_factory.mktemp("hand")
    run, ann = root / "run", root / "ann"
    ann.mkdir()
    a, b, c = "patient_0_node_0", "patient_0_node_1", "patient_1_node_0"
    write_slide(run, a, {(3, 3): 0.9, (3, 7): 0.6, (3, 15): 0.8, (15, 3): 0.7}, "micro")
    write_slide(run, b, {(3, 3): 0.4, (15, 15): 0.95}, "macro")
    write_slide(run, c, {(5, 5): 0.5, (15, 15): 0.3}, "itc")
    (ann / f"{a}.xml").write_text(asap_xml([
        ("_0", [(200, 200), (900, 200), (900, 500), (200, 500)]),
        ("_0", square(1000, 1000, 300)),
        ("_1", square(1500, 300, 50)),  # 50 um: ITC
    ]))  # fmt: skip
    geo = {"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
           "geometry": {"type": "Polygon", "coordinates": [[[200, 200], [500, 200], [500, 500],
                                                            [200, 500], [200, 200]]]}}  # fmt: skip
    (ann / f"{b}.geojson").write_text(json.dumps(geo))
    pd.DataFrame({"slide": [a, b, c], "status": ["ok"] * 3}).to_csv(run / "slides.csv", index=False)
    stages = root / "stages.csv"
    stages.write_text(f"patient,stage\npatient_0.zip,pN1mi\n{a}.tif,micro\n{b}.tif,micro\n"
                      f"patient_1.zip,pN0\n{c}.tif,negative\n")  # fmt: skip
    return run, ann, stages


def test_hand_made_run_gives_the_hand_computed_numbers(
    hand_made: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    run, ann, stages = hand_made
    out = tmp_path / "eval"
    m = evaluate_slides(run, ann, out, stages=stages, resamples=200)
    froc = m["froc"]
    assert froc["score"] == pytest.approx(0.5, abs=1e-9)
    assert list(froc["sensitivity_at_fps"].values()) == pytest.approx(
        [0, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3], abs=1e-9
    )
    assert (froc["lesions"], froc["itc_lesions"], froc["false_positives"]) == (3, 1, 4)
    assert "ITC" in froc["protocol"] and froc["slides"] == 3 and froc["score_ci"]["low"] is not None
    slide = m["slide_classification"]
    assert slide["roc_auc"] == 1.0 and slide["accuracy"] == pytest.approx(2 / 3)
    assert "slides" in slide["protocol"] and slide["roc_auc_ci"]["low"] is not None
    # pixels: A has 30 tumour cells (2 called), B 9 (none), 1 false cell each on A, B and C
    assert m["pixels"]["dice"] == pytest.approx(4 / 45) and m["pixels"]["iou"] == pytest.approx(
        2 / 43
    )
    cats = m["categories"]
    assert cats["confusion"][0][1] == 1 and cats["accuracy"] == pytest.approx(1 / 3)
    # patients: truth pN1mi, pN0; called pN1 (a macro), pN0(i+) (an ITC): kappa 2/3
    assert m["patients"]["kappa"] == pytest.approx(2 / 3, abs=1e-12)
    per = pd.read_csv(out / "per_slide.csv")
    assert per["lesions_hit"].tolist() == [1, 1, 0] and per["truth"].tolist() == [1, 1, 0]
    det = pd.read_csv(out / "detections.csv")
    assert sorted(det["outcome"]) == sorted(["tp", "tp", "itc", "fp", "tp", "fp", "fp", "fp"])
    assert (out / "froc.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert "FROC" in html and "largest lesion, truth (mm)" in html and "pN stage" in html
    assert json.loads((out / "metrics.json").read_text())["froc"]["score"] == froc["score"]


def test_outputs_inside_the_run_or_annotations_are_refused_before_anything(
    hand_made: tuple[Path, Path, Path],
) -> None:
    run, ann, _ = hand_made
    for bad in (run / "eval", ann / "eval", run.parent):
        with pytest.raises(OutputError):
            evaluate_slides(run, ann, bad)
        assert not (run / "eval").exists() and not (ann / "eval").exists()
    broken = run.parent / "broken_run"
    shutil.copytree(run, broken)
    (broken / "patient_1_node_0" / "probability.npy").write_bytes(b"not numpy")
    m = evaluate_slides(broken, ann, resamples=10)
    assert m["slides"]["evaluated"] == 2 and "probability.npy" in m["notes"][0]
    labels = run.parent / "labels.csv"
    labels.write_text("patient_0_node_0,Tumor\n")
    with pytest.raises(DataError, match="no label"):
        evaluate_slides(run, ann, labels=labels)


def test_camelyon16_reference_labels_override_the_annotations(
    hand_made: tuple[Path, Path, Path],
) -> None:
    run, ann, _ = hand_made
    labels = run.parent / "reference.csv"  # its form: no header, names capitalised, ragged rows
    labels.write_text("PATIENT_1_NODE_0,Normal\nPatient_0_Node_0,Tumor,Macro,Primary\n"
                      "patient_0_node_1,Normal\n")  # fmt: skip
    m = evaluate_slides(run, ann, labels=labels, resamples=20)
    assert (
        m["slides"]["tumour"] == 1 and m["slide_classification"]["roc_auc"] == 0.5
    )  # 0.9 > 0.5, < 0.95


def test_a_real_run_measured_through_the_command(
    tmp_path: Path, blob_slide: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metastasis.slides import run_slides

    slides = tmp_path / "slides"
    slides.mkdir()
    shutil.copy(blob_slide, slides / "blob.tif")
    run = tmp_path / "run"
    run_slides([slides], random_checkpoint, run, progress=False)
    ann = tmp_path / "ann"
    ann.mkdir()
    # the blob: model cells rows 2-4, cols 3-5; level 0 is twice the model's resolution
    (ann / "blob.xml").write_text(asap_xml([("_0", [(576, 384), (1152, 384), (1152, 960),
                                                    (576, 960)])]))  # fmt: skip
    out = tmp_path / "eval"
    code = main(["slides-eval", str(run), "--annotations", str(ann), "--out", str(out),
                 "--smooth", "0.5", "--resamples", "50"])  # fmt: skip
    assert code == 0 and "report:" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["froc"]["lesions"] == 1 and m["slides"]["evaluated"] == 1
    per = pd.read_csv(out / "per_slide.csv")
    assert per.loc[0, "truth_category"] == "micro"  # 576 px diagonal-ish: 0.40 mm
    assert main(["slides-eval", str(run), "--annotations", str(ann), "--out", str(run / "x")]) == 2


def test_mask_annotations_and_excluded_regions(tmp_path: Path) -> None:
    from PIL import Image

    run, ann = tmp_path / "run", tmp_path / "ann"
    ann.mkdir()
    # peaks: (3, 3) inside the lesion, (15, 15) inside the excluded region, (10, 15) outside
    write_slide(run, "s1", {(3, 3): 0.9, (15, 15): 0.8, (10, 15): 0.2}, "micro")
    mask = np.zeros((50, 50), np.uint8)
    mask[5:10, 5:10] = 1  # level-0 (200, 200) to (400, 400) at downsample 40
    Image.fromarray(mask).save(ann / "s1_mask.png")
    m = evaluate_slides(run, ann, mask_downsample=40, resamples=10)
    assert m["froc"]["lesions"] == 1 and m["froc"]["false_positives"] == 2
    (ann / "s1_mask.png").unlink()
    ring = [[200, 200], [400, 200], [400, 400], [200, 400], [200, 200]]
    ignore = [[1400, 1400], [1700, 1400], [1700, 1700], [1400, 1700], [1400, 1400]]
    (ann / "s1.geojson").write_text(json.dumps([
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"classification": {"name": "Tumour"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ignore]},
         "properties": {"classification": {"name": "Exclusion"}}},
    ]))  # fmt: skip
    out = tmp_path / "eval"
    m = evaluate_slides(run, ann, out, resamples=10)
    assert m["froc"]["false_positives"] == 1 and m["froc"]["score"] == 1.0
    assert pd.read_csv(out / "detections.csv")["outcome"].tolist() == ["tp", "ignored", "fp"]
    # the excluded tiles leave the pixel count: 400 cells, 9 excluded (centres inside)
    assert m["pixels"]["cells"]["pixels"] == 400 - 9


def test_the_evaluation_never_reaches_the_classifier() -> None:
    """slides-eval reads files: it must not load torch through the slide classifier."""
    from tests.test_imports import _reachable

    reached = _reachable("metastasis.slides.evaluation") | _reachable("metastasis.cli.slides_eval")
    assert not {"metastasis.slides.classify", "metastasis.slides.analyse"} & reached
