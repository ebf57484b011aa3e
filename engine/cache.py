"""Append-only, checksummed response cache.

A cache entry is one JSONL file named by the digest of its key parts (checkpoint content digest, prompt-set digest,
decoding settings, harness version); the parts are logged beside it in ``<key>.key.json``. Each line holds one
response and the sha256 of its own fields, and lines are appended a whole batch at a time with fsync, so a run killed
at any moment keeps every finished batch. A line that fails its checksum or names the wrong prompt (a torn write, a
hand edit) is reported and regenerated, never used.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.digest import sha256_json

HARNESS_CACHE_VERSION = "1"


@dataclass(frozen=True)
class CachedResponse:
    index: int
    prompt_sha256: str
    response: str
    n_tokens: int
    finished: bool  # stopped on an end-of-turn token rather than max_new_tokens

    def fields(self) -> dict:
        return {"i": self.index, "prompt_sha256": self.prompt_sha256, "response": self.response,
                "n_tokens": self.n_tokens, "finished": self.finished}


class ResponseStore:
    def __init__(self, root: Path, key_parts: dict):
        self.key_parts = {**key_parts, "cache_version": HARNESS_CACHE_VERSION}
        self.key = sha256_json(self.key_parts)[:32]
        self.path = root / "responses" / f"{self.key}.jsonl"
        self.corrupt_lines = 0

    def load(self, prompt_sha256s: list[str]) -> dict[int, CachedResponse]:
        """Entries whose checksum and prompt digest verify; anything else is counted and ignored."""
        found: dict[int, CachedResponse] = {}
        if not self.path.exists():
            return found
        with open(self.path, "rb") as fh:
            for raw in fh:
                try:
                    rec = json.loads(raw)
                    sha = rec.pop("sha256")
                    if sha != sha256_json(rec):
                        raise ValueError("checksum mismatch")
                    entry = CachedResponse(int(rec["i"]), rec["prompt_sha256"], rec["response"],
                                           int(rec["n_tokens"]), bool(rec["finished"]))
                    if not 0 <= entry.index < len(prompt_sha256s) or \
                            prompt_sha256s[entry.index] != entry.prompt_sha256:
                        raise ValueError("entry does not match its prompt")
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.corrupt_lines += 1
                    continue
                found[entry.index] = entry
        if self.corrupt_lines:
            print(f"quantscreen: {self.path}: ignored {self.corrupt_lines} damaged cache line(s); "
                  "they will be regenerated", file=sys.__stderr__)
        return found

    def append(self, entries: list[CachedResponse]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key_file = self.path.with_suffix(".key.json")
        if not key_file.exists():
            tmp = key_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.key_parts, indent=2, sort_keys=True))
            os.replace(tmp, key_file)
        lines = []
        for e in entries:
            rec = e.fields()
            lines.append(json.dumps({**rec, "sha256": sha256_json(rec)}, ensure_ascii=False) + "\n")
        # One write per batch; a torn final line (killed mid-write) fails its checksum on the next read.
        with open(self.path, "a", encoding="utf-8") as fh:
            if fh.tell() and not self._ends_with_newline():
                fh.write("\n")  # isolate a torn line left by a killed run
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
