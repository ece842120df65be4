"""Folder runs: many slides, resumable, shardable, with a table, a report and pN stages.

``run_slides(paths, checkpoint, out, ...)`` is the Python API behind ``metastasis slides``.
First, before any slide is read and with nothing written, it checks everything (``plan_run``):
the options (``SlideOptions``), the ``--patients`` table, the checkpoint and engine, and the
output folder, which must not be, hold or lie inside an input (a slide, a slide's data folder,
the checkpoint, the patients table), and whose slide folders hold nothing this toolkit did not
write. It lists the slides (files given, and every entry named like a slide in folders given:
a FIFO or a dangling link becomes a failed row, never a silent gap), keeps this shard's share
(``shard="I/N"``: slides ``I, I+N, I+2N, ...`` of the sorted list, I from 0), and for each
slide either skips it (its ``summary.json`` exists: done by an earlier run) or analyses it and
writes its outputs (``outputs``). A slide that fails (not a slide, damaged, no resolution...)
gets a one-line reason in ``<slide>/failed.json`` and in the table, and the run goes on. Last,
``slides.csv`` (every slide of the full list: ``ok``, ``failed`` or ``pending`` for slides
another shard has not finished), ``report.html`` and, with ``patients``, ``patients.csv`` (pN
stage per patient) are rebuilt from the slide folders.

A slide's outputs are written by one background thread (``SlideWriter``) while the next slide
is analysed: at most one slide waits to be written, so memory holds two slides' maps at most.
A slide whose writing fails is reported as that slide's failure (``failed.json`` in its
folder, nothing else left there), as a failed analysis is, and ``summary.json`` stays the last
file written in each folder; the tables are rebuilt once every slide is written. One loaded
model and one ONNX session (``SlideClassifier``) serve every slide of the run.

Start-up: the modules only the outputs need (pandas for the tables, Matplotlib for the heatmap,
Jinja2 for the report: about 1 CPU s together) are not imported before the first slide; a
background thread (``preload``) imports them while its tiles are read and classified (ONNX
Runtime and the decoders release the GIL there), so that a one-slide run does not pay for them
in series after its slide. Started earlier, with the classifier, the thread only slowed the
thumbnail and tissue mask down by as much (both threads then run Python, under the GIL).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metastasis.checkpoint import Bundle, checkpoint_path
from metastasis.errors import DataError, MetastasisError, OutputError, first_line
from metastasis.extras import SLIDES, require
from metastasis.inference.options import inference_options
from metastasis.io import atomic_path, atomic_write_json, check_outputs, output_dir
from metastasis.slides import staging
from metastasis.slides.analyse import analyse_slide
from metastasis.slides.classify import SlideClassifier
from metastasis.slides.options import SlideOptions, read_patients, slide_options
from metastasis.slides.outputs import (
    FAILED,
    SUMMARY,
    check_clearable,
    clear_slide_folder,
    read_summary,
    write_slide_outputs,
)
from metastasis.slides.readers import (
    IMAGE_SUFFIXES,
    SLIDE_SUFFIXES,
    TIFF_SUFFIXES,
    slide_files,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SLIDES_CSV = "slides.csv"
PATIENTS_CSV = "patients.csv"
REPORT = "report.html"
SUFFIXES = SLIDE_SUFFIXES | TIFF_SUFFIXES | IMAGE_SUFFIXES
COLUMNS = [
    "slide", "path", "status", "reason", "category", "largest_diameter_mm", "tumour_area_mm2",
    "lesions", "tissue_area_mm2", "tiles_classified", "tiles_failed", "reader", "level", "mpp",
    "scale", "seconds",
]  # fmt: skip
# what the outputs import (tables, report, heatmap) and the slide itself does not
OUTPUT_MODULES = ("pandas", "metastasis.slides.report", "metastasis.slides.heatmap")


def display(path: Path | str) -> str:
    """A path as text that can always be written as UTF-8 (undecodable bytes as U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def slide_id(path: Path) -> str:
    """The output folder name of a slide: its name without the extension(s), made safe."""
    name = display(path.name)
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    safe = re.sub(r"[^\w.+-]", "_", name).lstrip(".")
    return safe or "slide"


def list_slides(paths: Sequence[str | Path]) -> list[Path]:
    """Files given, and every entry named like a slide inside folders given (sorted).

    In a folder, anything with a slide or image suffix is listed whatever it is (a dangling
    or looping symbolic link, a FIFO, a folder): each becomes a row of the table, failed with
    its reason, instead of vanishing from the run. Hidden names (``.x.tif``) are left out, with
    a warning that counts them."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            named = [f for f in p.iterdir() if f.suffix.lower() in SUFFIXES]
            found += sorted(f for f in named if not f.name.startswith("."))
            hidden = sorted(f.name for f in named if f.name.startswith("."))
            if hidden:  # temporary copies, macOS "._" files: left out, but said
                log.warning("%s: %d hidden files named like slides left out (%s)",
                            display(p), len(hidden), display(hidden[0]))  # fmt: skip
        elif p.exists() or p.is_symlink():
            found.append(p)
        else:
            raise DataError(f"{display(p)}: no such file or folder")
    return found


def assign_ids(slides: list[Path]) -> list[tuple[str, Path]]:
    seen: dict[str, int] = {}
    out = []
    for p in slides:
        sid = slide_id(p)
        k = seen.get(sid, 0)
        seen[sid] = k + 1
        out.append((sid if k == 0 else f"{sid}-{k + 1}", p))
    return out


@dataclass
class Plan:
    """What a run will do, worked out (and checked) before any slide is read."""

    everything: list[tuple[str, Path]]  # every slide of every shard, with its folder name
    todo: list[tuple[str, Path]]  # this shard's slides not done yet
    out: Path
    patients: pd.DataFrame | None


def run_slides(
    paths: Sequence[str | Path] | str | Path,
    checkpoint: Any,
    out: str | Path,
    options: SlideOptions | None = None,
    *,
    engine: str = "auto",
    tta: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    threshold: float | None = None,
    progress: bool = True,
    **settings: Any,
) -> pd.DataFrame:
    """Analyse slides into ``out/<slide>/`` and return the table written to ``slides.csv``.

    ``checkpoint``: a checkpoint file, a run folder or a loaded ``Bundle``; ``engine``,
    ``tta``, ``device``, ``batch_size``, ``threshold``: as ``InferenceOptions``; ``options``: a
    ``SlideOptions``, or its settings as keywords (stride, mpp, reader, tissue_threshold,
    min_tissue, itc_mm, micro_mm, lesion_sigma, lesion_seed, lesion_grow,
    min_lesion_tiles, lesion_shuffles, slide_score, fully_conv, workers, block_tiles,
    geojson_tiles, shard, patients, resume). Every option, input and output is checked
    before the first slide is read. See the module notes for resume, shards and failures;
    ``analyse_slide`` and ``outputs`` for the rest."""
    require("whole-slide analysis", *SLIDES)  # one line naming the extra, not a traceback
    opts = slide_options({**(options.to_dict() if options is not None else {}), **settings})
    run = inference_options(
        dict(engine=engine, tta=tta, device=device, batch_size=batch_size, threshold=threshold)
    )
    plan = plan_run([paths] if isinstance(paths, (str, Path)) else paths, checkpoint, out, opts)
    # the checkpoint, engine and device are checked here too, before any slide
    classifier = SlideClassifier.from_checkpoint(
        checkpoint, stride=opts.stride, fully_conv=opts.fully_conv, block_tiles=opts.block_tiles,
        **run.to_dict(),
    )  # fmt: skip
    output_dir(plan.out)  # the first thing written, once everything is known to be good
    if plan.todo:
        log.info("classifier: %s, %s, stride %d", classifier.mode, classifier.engine_text,
                 opts.stride)  # fmt: skip
    # the outputs' modules, imported while the first slide's tiles are read and classified
    on_reading = functools.cache(functools.partial(preload, OUTPUT_MODULES))
    with SlideWriter(opts.geojson_tiles) as writer:
        for sid, p in plan.todo:
            _analyse_into(p, sid, plan.out / sid, classifier, opts, progress, writer, on_reading)
    return write_tables(plan, classifier.bundle.warning)


def plan_run(
    paths: Sequence[str | Path], checkpoint: Any, out: str | Path, opts: SlideOptions
) -> Plan:
    """The slides of this shard still to do, the patients table, and the output folder, all
    checked: nothing is written and no slide is read here."""
    index, count = opts.shard_index
    everything = assign_ids(list_slides(paths))
    if not everything:
        raise DataError(f"no slides found in {', '.join(display(p) for p in paths)}")
    patients = read_patients(opts.patients) if opts.patients is not None else None
    out_dir = Path(out)
    mine = everything[index::count]
    inputs = [f for _, p in everything for f in slide_files(p)]
    if opts.patients is not None:
        inputs.append(Path(opts.patients))
    if not isinstance(checkpoint, Bundle):
        inputs.append(checkpoint_path(checkpoint))
    tables = [out_dir / SLIDES_CSV, out_dir / REPORT, out_dir / PATIENTS_CSV]
    check_outputs(files=tables, owned=[out_dir, *(out_dir / s for s, _ in mine)], inputs=inputs)
    todo = [(s, p) for s, p in mine if not (opts.resume and read_summary(out_dir / s) is not None)]
    for sid, _ in todo:
        check_clearable(out_dir / sid)  # never delete what this toolkit did not write
    if len(todo) < len(mine):
        log.info("%d of %d slides already done; skipping them", len(mine) - len(todo), len(mine))
    return Plan(everything, todo, out_dir, patients)


def preload(modules: Sequence[str]) -> threading.Thread:
    """Import ``modules`` in a background thread (a daemon: it never holds up the exit).

    Whoever needs one of them imports it as usual: it waits for the thread's import where that
    is under way (Python's import lock), and a module that failed here fails there again, with
    its error where it is used."""

    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # raised again where the module is used
                continue

    thread = threading.Thread(target=work, name="slide-preload", daemon=True)
    thread.start()
    return thread


class SlideWriter:
    """Writes slides' outputs in one background thread, one slide at a time, in order.

    ``submit`` first waits for the slide before (so one slide at most waits to be written)
    and settles it: a failure to write it is that slide's failure (``_record_failure``), an
    ``OutputError`` (the output folder itself is broken) stops the run, as it does when
    analysing. Leaving the ``with`` block waits for the last slide and settles it."""

    def __init__(self, geojson_tiles: bool = False) -> None:
        self.geojson_tiles = geojson_tiles
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slide-writer")
        self._pending: tuple[str, Path, Path, Future[Any]] | None = None

    def submit(self, sid: str, path: Path, folder: Path, result: Any) -> None:
        self.wait()
        job = self._pool.submit(write_slide_outputs, result, folder, self.geojson_tiles)
        self._pending = (sid, path, folder, job)

    def wait(self) -> None:
        """Wait for the slide being written, and report its failure if it failed."""
        if self._pending is None:
            return
        sid, path, folder, job = self._pending
        self._pending = None
        try:
            job.result()
        except OutputError:
            raise
        except Exception as exc:  # as in _analyse_into: this slide fails, the run goes on
            _record_failure(sid, path, folder, exc)

    def __enter__(self) -> SlideWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                self.wait()
        finally:  # interrupted: the slide being written has no summary.json, so it is redone
            self._pool.shutdown(wait=True, cancel_futures=True)


def _analyse_into(
    p: Path, sid: str, folder: Path, classifier: SlideClassifier, opts: SlideOptions,
    progress: bool, writer: SlideWriter | None = None,
    on_reading: Callable[[], object] = lambda: None,
) -> None:  # fmt: skip
    """Analyse one slide into ``folder`` (its outputs written by ``writer`` in the background,
    or here without one); a failure is written as ``failed.json`` there."""
    clear_slide_folder(folder)  # half-written by a killed run, or failed before: redo
    try:
        result = analyse_slide(p, classifier, opts, slide_id=sid, progress=progress,
                               on_reading=on_reading)  # fmt: skip
        result.path = Path(display(p))
    except OutputError:  # the output folder itself is broken: every slide would fail
        raise
    except Exception as exc:  # one slide's failure must not stop the others
        _record_failure(sid, p, folder, exc)
        return
    if writer is not None:
        writer.submit(sid, p, folder, result)
        return
    try:
        write_slide_outputs(result, folder, opts.geojson_tiles)
    except OutputError:
        raise
    except Exception as exc:
        _record_failure(sid, p, folder, exc)


def _record_failure(sid: str, p: Path, folder: Path, exc: BaseException) -> None:
    """Log a slide's failure, clear what it left in its folder, write its ``failed.json``."""
    reason = first_line(exc, with_type=not isinstance(exc, MetastasisError))
    log.error("%s: failed: %s", sid, reason)
    log.debug("%s: failure details", sid, exc_info=exc)
    clear_slide_folder(folder)
    atomic_write_json(folder / FAILED, {"slide": sid, "path": display(p), "reason": reason})


def write_tables(plan: Plan, warning: str | None = None) -> pd.DataFrame:
    """``slides.csv``, ``patients.csv`` (with a patients table) and ``report.html``, rebuilt
    from the slide folders of every shard."""
    from metastasis.slides.report import write_report

    table = slides_table(plan.everything, plan.out)
    with atomic_path(plan.out / SLIDES_CSV) as tmp:
        table.to_csv(tmp, index=False)
    stages = None
    if plan.patients is not None:
        stages = patient_stages(table, plan.patients)
        with atomic_path(plan.out / PATIENTS_CSV) as tmp:
            stages.to_csv(tmp, index=False)
    write_report(table, plan.out, stages, warning)
    return table


def slides_table(slides: list[tuple[str, Path]], out_dir: Path) -> pd.DataFrame:
    """One row per slide of the full list, from the slide folders (ok / failed / pending)."""
    import json

    import pandas as pd

    rows: list[dict[str, Any]] = []
    for sid, p in slides:
        folder = out_dir / sid
        summary = read_summary(folder)
        row: dict[str, Any] = {"slide": sid, "path": display(p)}
        if summary is not None:
            row.update({k: summary.get(k) for k in COLUMNS if k in summary})
            row.update(status="ok", reason="", path=display(p))
        elif (folder / FAILED).is_file():
            try:
                reason = json.loads((folder / FAILED).read_text(encoding="utf-8"))["reason"]
            except (OSError, ValueError, KeyError, TypeError):
                reason = "failed"
            row.update(status="failed", reason=reason)
        else:
            row.update(status="pending", reason="not analysed yet (another shard, or killed)")
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    ints = ["lesions", "tiles_classified", "tiles_failed", "level"]
    table[ints] = table[ints].astype("Int64")  # empty (not NaN floats) for failed slides
    return table


def patient_stages(table: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """pN stage per patient from ``links`` (columns ``slide`` and ``patient``: the
    ``--patients`` CSV as ``options.read_patients`` reads it).

    A row's ``slide`` matches a slide id, a file name or a file stem. A patient with a slide
    that failed, is missing or is ``unknown`` gets ``unknown``."""
    import pandas as pd

    lookup: dict[str, Any] = {}
    for _, row in table.iterrows():
        name = Path(str(row["path"])).name
        cat = row["category"] if row["status"] == "ok" else None
        for key in (row["slide"], name, name.split(".")[0]):
            lookup[str(key)] = cat
    out = []
    for patient, group in links.groupby("patient", sort=True):
        cats = [lookup.get(str(s)) for s in group["slide"]]
        out.append(
            {
                "patient": patient,
                "slides": len(cats),
                "categories": ";".join(c or "unknown" for c in cats),
                "stage": staging.pn_stage(cats),
            }
        )
    return pd.DataFrame(out, columns=["patient", "slides", "categories", "stage"])


__all__ = ["SUMMARY", "run_slides", "slides_table"]
