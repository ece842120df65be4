"""The optional extras (``pyproject.toml``'s ``[project.optional-dependencies]``) and the one way
to import a package of one: `require`, which imports it or raises `MissingExtra`, a one-line
`MetastasisError` naming what needs it and the ``pip install`` that brings it::

    the REST service needs FastAPI: pip install 'metastasis[serve]'

Commands call `require` before they import the code that needs an extra (`metastasis.cli`), so
a missing extra is one line and exit status 2, never a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from metastasis.errors import MetastasisError, first_line

# The extra that installs each importable module the code uses, and the name users know it by.
# (``docs`` and ``dev`` hold no module a command imports.)
MODULES: dict[str, tuple[str, str]] = {
    "optuna": ("hpo", "Optuna"),
    "fastapi": ("serve", "FastAPI"),
    "uvicorn": ("serve", "Uvicorn"),
    "python_multipart": ("serve", "python-multipart"),
    "fastapi_offline": ("serve", "fastapi-offline (Swagger UI and ReDoc served locally)"),
    "tifffile": ("wsi", "tifffile"),
    "shapely": ("wsi", "Shapely"),
    "skimage": ("wsi", "scikit-image"),
    "openslide": ("wsi", "OpenSlide"),
    "tensorboard": ("track", "TensorBoard"),
    "mlflow": ("track", "MLflow"),
    "openvino": ("int8", "OpenVINO"),
    "nncf": ("int8", "NNCF"),
}

# What each command (or option) needs, imported up front by the CLI.
SERVE = ("fastapi", "uvicorn", "python_multipart", "fastapi_offline")
SLIDES = ("shapely", "skimage", "tifffile")  # OpenSlide only for its formats: the reader asks
TUNE = ("optuna",)
LOGGERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # --logger NAME -> module


class MissingExtra(MetastasisError):
    """An optional extra is not installed (or one of its packages does not import)."""

    def __init__(self, message: str, extra: str, module: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.module = module


def install_hint(extra: str) -> str:
    return f"pip install 'metastasis[{extra}]'"


def require(what: str, *modules: str) -> list[ModuleType]:
    """Import ``modules`` (each of an extra in `MODULES`) for ``what`` (the command or option
    that needs them), or raise `MissingExtra` for the first that does not import."""
    imported = []
    for name in modules:
        extra, label = MODULES[name]
        try:
            imported.append(importlib.import_module(name))
        except (ImportError, OSError) as exc:  # OSError: a native library (libopenslide) missing
            absent = isinstance(exc, ModuleNotFoundError) and exc.name in (name, None)
            why = "" if absent else f", which does not import ({first_line(exc, with_type=True)})"
            raise MissingExtra(
                f"{what} needs {label}{why}: {install_hint(extra)}", extra, name
            ) from None
    return imported


def require_loggers(loggers: Sequence[str]) -> None:
    """The tracking packages of ``--logger`` names (the ``track`` extra)."""
    for name in loggers:
        if name in LOGGERS:
            require(f"--logger {name}", LOGGERS[name])
