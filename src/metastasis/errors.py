"""Exceptions the CLI turns into one clear line (no traceback), and the one way to shorten an
exception's text to that line."""

from __future__ import annotations


class MetastasisError(Exception):
    """Base class for problems the user can fix (bad input, bad option, missing file)."""


class DataError(MetastasisError):
    """A data set or file cannot be used; the message names the file and the problem."""


class CheckpointError(MetastasisError):
    """A checkpoint cannot be loaded safely or does not match what is asked of it."""


class OutputError(MetastasisError):
    """An output cannot be written (a file where a folder is wanted, a read-only or full disk,
    an input of the same command); the message names the path and the problem."""


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first non-empty line of an exception's message (its type's name if it has none),
    with ``with_type`` as ``Type: line``. Undecodable bytes carried as surrogates (a file name
    that is not UTF-8) become U+FFFD, so the line can always be written as UTF-8."""
    lines = str(exc).strip().splitlines()
    text = _printable(lines[0]) if lines else ""
    if with_type:
        return f"{type(exc).__name__}: {text}".rstrip(": ")
    return text or type(exc).__name__


def _printable(text: str) -> str:
    """``text`` as it would be written as UTF-8: the bytes ``os.fsdecode`` kept as surrogates
    are decoded again, and what is still not UTF-8 becomes U+FFFD; other text is unchanged."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate, not an escaped byte
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")
