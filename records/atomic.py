"""Write a file so that a reader (or a run killed mid-write) never sees half of it: a temporary file beside it, then
one rename. Folders and streamed joins (engine/derive.py, engine/sources.py) rename the same way at their own scale."""
from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, encoding: str = "utf-8") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding=encoding)
    os.replace(tmp, path)
