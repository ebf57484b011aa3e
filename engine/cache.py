"""Append-only, checksummed caches: generated responses and captured activations.

A cache entry is one JSONL file named by the digest of its key parts (checkpoint content digest, prompt-set digest,
decoding or capture settings, harness version); the parts are logged beside it in ``<key>.key.json``. Each line holds
one prompt's result, the key it was computed under and the sha256 of its own fields, and lines are appended a whole
batch at a time (one reply at a time for llama.cpp) with fsync, so a run killed at any moment keeps every finished
batch. A line that fails its checksum,
carries another key (a file copied or renamed by hand) or names the wrong prompt (a torn write, a hand edit) is
reported and recomputed, never used.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from quantscreen.records.atomic import write_atomic
from quantscreen.records.digest import sha256_json
from quantscreen.records.errors import ScreenInputError

HARNESS_CACHE_VERSION = "2"  # 2: every line carries its store key


class JsonlStore:
    """One key's entries: dicts with at least `i` (prompt index) and `prompt_sha256`."""

    kind = "entries"
    appended = 0  # lines this process appended to any store (what a stopped run says it kept)

    def __init__(self, root: Path, key_parts: dict, subdir: str):
        self.key_parts = {**key_parts, "cache_version": HARNESS_CACHE_VERSION}
        self.key = sha256_json(self.key_parts)[:32]
        self.path = root / subdir / f"{self.key}.jsonl"
        self.corrupt_lines = 0

    def _verified(self):
        """Lines whose checksum verifies (damaged ones are counted in `corrupt_lines`)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for raw in fh:
                try:
                    rec = json.loads(raw)
                    if rec.pop("sha256") != sha256_json(rec):
                        raise ValueError("checksum mismatch")
                    if rec.pop("key") != self.key:
                        raise ValueError("entry belongs to another cache key")
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.corrupt_lines += 1
                    continue
                yield rec

    def _report_corrupt(self) -> None:
        if self.corrupt_lines:
            print(f"quantscreen: {self.path}: ignored {self.corrupt_lines} damaged cache line(s); "
                  f"their {self.kind} will be recomputed", file=sys.__stderr__)

    def load_records(self, prompt_sha256s: list[str]) -> dict[int, dict]:
        """Entries whose checksum and prompt digest verify; anything else is counted and ignored."""
        found: dict[int, dict] = {}
        for rec in self._verified():
            try:
                i = int(rec["i"])
                if not 0 <= i < len(prompt_sha256s) or prompt_sha256s[i] != rec["prompt_sha256"]:
                    raise ValueError("entry does not match its prompt")
                found[i] = self.decode(rec)
            except (ValueError, KeyError, TypeError, AttributeError):
                self.corrupt_lines += 1
        self._report_corrupt()
        return found

    def load_by_digest(self, field: str = "digest") -> dict[str, object]:
        """A content-addressed store's entries by their `field` (no prompt order: the key is the content)."""
        found: dict[str, object] = {}
        for rec in self._verified():
            try:
                found[str(rec[field])] = self.decode(rec)
            except (ValueError, KeyError, TypeError, AttributeError):
                self.corrupt_lines += 1
        self._report_corrupt()
        return found

    def decode(self, rec: dict):
        return rec

    def append_records(self, records: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key_file = self.path.with_suffix(".key.json")
        if not key_file.exists():
            write_atomic(key_file, json.dumps(self.key_parts, indent=2, sort_keys=True))
        lines = []
        for rec in records:
            rec = {**rec, "key": self.key}
            lines.append(json.dumps({**rec, "sha256": sha256_json(rec)}, ensure_ascii=False) + "\n")
        # One write per batch; a torn final line (killed mid-write) fails its checksum on the next read.
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                if fh.tell() and not self._ends_with_newline():
                    fh.write("\n")  # isolate a torn line left by a killed run
                fh.write("".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            JsonlStore.appended += len(lines)
        except OSError as exc:  # a full disk, a quota, a read-only mount
            raise ScreenInputError(self.path, f"could not be written ({exc.strerror or exc})",
                                   "free space there or pass --cache-dir on another disk; the batches already "
                                   "cached are kept and the next run resumes from them") from None

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"


@dataclass(frozen=True)
class CachedResponse:
    index: int
    prompt_sha256: str
    response: str
    n_tokens: int
    finished: bool  # stopped on an end-of-turn token rather than max_new_tokens
    # paired verification (engine.draft): forward passes, drafted / accepted tokens, the tokens shared with the
    # baseline's reply from the start, and the baseline reply's length; None for plain decoding
    verify: dict | None = None

    def fields(self) -> dict:
        out = {"i": self.index, "prompt_sha256": self.prompt_sha256, "response": self.response,
               "n_tokens": self.n_tokens, "finished": self.finished}
        if self.verify is not None:
            out["verify"] = self.verify
        return out


class ResponseStore(JsonlStore):
    kind = "responses"

    def __init__(self, root: Path, key_parts: dict):
        super().__init__(root, key_parts, "responses")

    def decode(self, rec: dict) -> CachedResponse:
        verify = rec.get("verify")
        return CachedResponse(int(rec["i"]), rec["prompt_sha256"], rec["response"], int(rec["n_tokens"]),
                              bool(rec["finished"]), None if verify is None else {k: int(v) for k, v in verify.items()})

    def load(self, prompt_sha256s: list[str]) -> dict[int, CachedResponse]:
        return self.load_records(prompt_sha256s)

    def append(self, entries: list[CachedResponse]) -> None:
        self.append_records([e.fields() for e in entries])
