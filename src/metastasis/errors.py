"""Exceptions the CLI turns into one clear line (no traceback)."""

from __future__ import annotations


class MetastasisError(Exception):
    """Base class for problems the user can fix (bad input, bad option, missing file)."""


class DataError(MetastasisError):
    """A data set or file cannot be used; the message names the file and the problem."""


class CheckpointError(MetastasisError):
    """A checkpoint cannot be loaded safely or does not match what is asked of it."""
