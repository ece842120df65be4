"""The slide viewer (``metastasis view OUT``): a ``metastasis slides`` output folder in the
browser, each slide as Deep Zoom tiles in OpenSeadragon (vendored: works offline) with the
probability map as a toggleable overlay, the lesion outlines with their diameters, a scale bar
in mm and the slide list with categories.

Modules: ``folder`` (the output folder: slide list, summaries, map geometry; names looked up in
its table, never used as paths), ``deepzoom`` (Deep Zoom geometry and tiles: OpenSlide's
generator, or the project's readers), ``overlay`` (the colourised map, the lesion outlines),
``app`` (the FastAPI application and ``view``, which runs it with uvicorn); the page is in
``static/``. Research use only: not a diagnosis.
"""

from __future__ import annotations
