"""Where `--out` writes: a new file, or one of the kind asked for, never the run log.

A result is written to a temporary file beside the target and renamed over it when whole,
so a failed or interrupted write (a full disk, Ctrl-C) leaves the old file as it was. An
existing file is replaced only if it already holds what was asked for (a CSV for --format
csv, ...): a run log, a folder, a device or a FIFO never is.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from store.errors import StoreError

PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 4096


def check_out_name(text: str) -> Path:
    """The path an --out option names (an empty name is no path, not the folder '.')."""
    if not text.strip():
        raise StoreError("--out: an empty file name")
    return Path(text)


def check_out(path: Path, kind: str, run_log: Path | None = None) -> Path:
    """`path` if a `kind` file (csv, json, parquet) may be written there, else StoreError."""
    where = f"--out {path}"
    folder = path.parent
    try:
        if not folder.is_dir():
            raise StoreError(f"{where}: the folder {folder} does not exist")
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise StoreError(f"{where}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise StoreError(f"{where} is a folder: give a file name")
    if not stat.S_ISREG(mode):
        raise StoreError(f"{where} is not a regular file (a device or a FIFO)")
    if run_log is not None and _same_file(path, run_log):
        raise StoreError(f"{where} is the run log itself: choose another file")
    if not _holds(path, kind):
        raise StoreError(
            f"{where} exists and is not a {kind} file: remove it or choose another name"
        )
    return path


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block ends without error
    (and removed when it does not); an OSError becomes a one-line StoreError."""
    try:
        handle, temp = tempfile.mkstemp(prefix=".scaling-out-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StoreError(f"--out {path}: cannot write there: {exc.strerror or exc}") from exc
    os.close(handle)
    try:
        yield Path(temp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, path)
    except OSError as exc:
        raise StoreError(f"--out {path}: cannot write it: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _same_file(path: Path, other: Path) -> bool:
    """Whether two paths name one file (links and symbolic links included)."""
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def _holds(path: Path, kind: str) -> bool:
    """Whether an existing file already holds `kind` (an empty file holds anything)."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        return True
    if kind == "parquet":
        return head.startswith(PARQUET_MAGIC)
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a cut multi-byte character at the end is still text
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return kind != "json" or text.lstrip().startswith(("[", "{"))
