"""Content digests of files and folders, memoised by (path, size, mtime) so a 14 GB checkpoint is hashed once."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

_CHUNK = 1 << 22
from quantscreen.records.atomic import write_atomic


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


class DigestMemo:
    """sha256 of files, remembered in a small JSON file keyed by path, size and mtime."""

    def __init__(self, memo_path: Path | None):
        self.memo_path = memo_path
        self._memo: dict[str, str] = {}
        if memo_path and memo_path.exists():
            try:
                self._memo = json.loads(memo_path.read_text())
            except (OSError, ValueError):
                self._memo = {}  # a damaged memo only costs re-hashing

    def file(self, path: Path) -> str:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if key not in self._memo:
            self._memo[key] = sha256_file(path)
            self._save()
        return self._memo[key]

    def files(self, root: Path, names: list[str]) -> str:
        """One digest over several files of a folder: their names and contents."""
        return sha256_json({name: self.file(root / name) for name in sorted(names)})

    def _save(self) -> None:
        if not self.memo_path:
            return
        write_atomic(self.memo_path, json.dumps(self._memo, indent=0, sort_keys=True))
