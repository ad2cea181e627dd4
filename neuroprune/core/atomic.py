"""Atomic file output (layer L0): write to a temporary file beside the target, then rename.

An interrupted run never leaves a half-written artifact and never destroys an earlier one:
``os.replace`` is atomic on POSIX when source and target are on the same file system.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``.

    Use for writers that insist on a file name (``torch.save``, ``nir.write``, matplotlib):
    ``with atomic_path(out) as tmp: writer(tmp)``. On an exception the temporary file is removed
    and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, target)
    except OSError as exc:
        if exc.filename is None:  # write() errors (ENOSPC, EFBIG) carry no path: name the target
            exc.filename = str(target)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    return write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (keys kept in insertion order)."""
    return write_text(target, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_through_memory(target: str | os.PathLike, writer: Callable[[io.BytesIO], Any]) -> Path:
    """Atomically produce ``target`` from ``writer(buffer)``, which writes the whole file into
    an in-memory buffer first; its bytes then reach the disk in one :func:`write_bytes`.

    For writers that fail on a short write with their own error instead of an ``OSError``
    (``torch.save``: "unexpected pos"; HDF5 and ONNX likewise): a file-size limit, a full disk
    or an unwritable folder is then always an ``OSError`` naming ``target`` (exit 4)."""
    buffer = io.BytesIO()
    writer(buffer)
    return write_bytes(target, buffer.getvalue())


def write_with(target: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Atomically produce ``target`` by calling ``writer(tmp_path)``."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def _json_default(obj: Any) -> Any:
    """JSON for numpy scalars/arrays and dataclass-like objects."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
