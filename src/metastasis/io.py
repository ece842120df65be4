"""Output locations: every file and folder the toolkit writes goes through here.

* A file is written to a temporary name in the same folder, flushed to disk, given the mode
  ``open()`` would have given it (0666 less the umask; ``mkstemp`` makes 0600), then renamed over
  the final name, so a crash never leaves a half-written file under the real name and a report
  or checkpoint can be read by whoever may read the folder.
* Any failure of the operating system while making or writing an output (a file where a folder
  is wanted, a read-only file system, a full disk, no permission) becomes one `OutputError`
  naming the path and the problem; the command line prints it as one line with exit status 2.
* `check_outputs` is called before a command starts its work: it refuses outputs that cannot be
  made and outputs that are inputs of the same command (``predict --out train_labels.csv``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from metastasis.errors import DataError, MetastasisError, OutputError


def os_problem(exc: OSError) -> str:
    """The operating system's reason, in words (``no space left on device``)."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return "no space left on the disk"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOTDIR:
        return "a path component is a file, not a folder"
    if exc.errno == errno.EISDIR:
        return "is a folder, not a file"
    if exc.errno == errno.EEXIST:
        return "exists and is not a folder"
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Make the folder ``path`` (and its parents) or raise one `OutputError` saying why not."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{p}: {what} is a file, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{p}: cannot create {what}: {os_problem(exc)}") from None
    return p


def check_outputs(
    files: Iterable[str | os.PathLike[str]] = (),
    folders: Iterable[str | os.PathLike[str]] = (),
    inputs: Iterable[str | os.PathLike[str]] = (),
    is_input: Callable[[Path], bool] | None = None,
    owned: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse, before any work and without creating anything, outputs that cannot be written
    or that would replace an input of the same command.

    A file must not be a folder and a folder not a file; the nearest existing folder above each
    must be a folder this process may write in, on a writable file system. No output file may
    be one of ``inputs`` (the same file under any name, hard links included) or a file for
    which ``is_input`` (e.g. `Layout.is_input`) says yes. An ``owned`` folder (one whose
    content the command may delete and remake, like a slide's output folder) must not be, hold
    or lie inside any of ``inputs`` (files or folders), under any name: symbolic links and
    bind mounts are seen through.
    """
    owned_dirs = [Path(d) for d in owned]
    for d in [*map(Path, folders), *owned_dirs]:
        if d.exists() and not d.is_dir():
            raise OutputError(f"{d}: is a file; expected a folder to write into")
        _check_writable(d)
    input_paths = [Path(p) for p in inputs]
    taken = _identities(input_paths)
    for f in map(Path, files):
        if f.is_dir():
            raise OutputError(f"{f}: is a folder; expected a file name to write")
        if (taken and _identity(f) in taken) or (is_input is not None and is_input(f)):
            raise OutputError(f"{f}: is an input of this command; refusing to overwrite it")
        _check_writable(f.parent)
    if owned_dirs and input_paths:
        _check_owned(owned_dirs, input_paths)


def _check_owned(owned: list[Path], inputs: list[Path]) -> None:
    """No owned folder is, holds or lies inside an input (compared by device and inode)."""
    where: dict[tuple[int, int], Path] = {}  # every input and every folder above one
    above: dict[tuple[int, int], Path] = {}
    for src in inputs:
        node = _node(src)
        if node is None:
            continue
        where.setdefault(node, src)
        for parent in Path(os.path.realpath(src)).parents:
            parent_node = _node(parent)
            if parent_node is not None:
                above.setdefault(parent_node, src)
    for d in owned:
        node = _node(d)
        if node is not None and node in where:
            raise OutputError(f"{d}: is an input of this command ({where[node]}); refusing to "
                              "write or delete there")  # fmt: skip
        if node is not None and node in above:
            raise OutputError(f"{d}: holds an input of this command ({above[node]}); refusing "
                              "to write or delete there")  # fmt: skip
        for parent in Path(os.path.realpath(d)).parents:  # resolved as far as it exists
            parent_node = _node(parent)
            if parent_node is not None and parent_node in where:
                raise OutputError(f"{d}: lies inside {where[parent_node]}, an input of this "
                                  "command; refusing to write or delete there")  # fmt: skip


def _node(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file or folder, following symbolic links; None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _check_writable(folder: Path) -> None:
    """The nearest existing folder at or above ``folder`` accepts new entries."""
    p = folder if str(folder) else Path(".")
    while not p.exists() and not p.is_symlink() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise OutputError(f"{folder}: cannot create it: {p} is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(p) else "permission denied"
        raise OutputError(f"{folder}: cannot write here: {reason}")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _identities(paths: Iterable[str | os.PathLike[str]]) -> set[tuple[int, int]]:
    return {i for i in (_identity(Path(p)) for p in paths) if i is not None}


def regular_file(path: Path) -> None:
    """Refuse, in one line, an input that is not a regular file: a FIFO or device would block
    or never end, and a folder, a symbolic-link loop or a dangling link is no file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise DataError(f"{path}: a dangling symbolic link (to {os.readlink(path)})") from None
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: a symbolic-link loop") from None
        raise DataError(f"{path}: cannot open: {os_problem(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{path}: a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise DataError(f"{path}: not a regular file ({kind})")


def ensure_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse to start writing ``needed`` bytes into ``folder`` when the disk has less free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise OutputError(f"{folder}: cannot read free space: {os_problem(exc)}") from None
    if needed > free:
        raise OutputError(
            f"{folder}: {what} needs {_size(needed)}, only {_size(free)} free on that disk"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def preallocate(path: Path, size: int) -> None:
    """Reserve ``size`` bytes of disk for the file at ``path`` (already created).

    Writing through a memory map into blocks the disk does not have kills the process with
    SIGBUS; reserved blocks cannot run out, and a full disk is an `OutputError` here instead.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise OutputError(f"{path}: cannot open for writing: {os_problem(exc)}") from None
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OutputError(f"{path}: cannot reserve {_size(size)}: {os_problem(exc)}") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The caller writes the file at the yielded path (with any library). On an exception the
    temporary file is removed and ``path`` is left untouched; an `OSError` (from the block or
    from making, syncing or renaming the file) becomes one `OutputError` naming ``path``.
    """
    final = Path(path)
    if final.is_dir():
        raise OutputError(f"{final}: is a folder; expected a file name to write")
    output_dir(final.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write: {os_problem(exc)}") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = _os_error(exc) if isinstance(exc, Exception) else None  # never Ctrl-C
        if cause is not None:
            raise OutputError(f"{final}: cannot write: {os_problem(cause)}") from None
        raise


def _os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind ``exc``: itself, or one a writer met before raising its own error
    (torch's zip writer turns a full disk into a RuntimeError about file positions)."""
    seen = 0
    while exc is not None and seen < 8 and not isinstance(exc, MetastasisError):
        if isinstance(exc, OSError):
            return exc
        hidden = exc.__suppress_context__  # `raise ... from None`: already put into words
        exc, seen = exc.__cause__ or (None if hidden else exc.__context__), seen + 1
    return None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n"
    )


def _jsonable(obj: Any) -> Any:
    """Turn numpy scalars/arrays and paths into plain JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> SHA-256, per process


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256, computed once per process for a given (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]
