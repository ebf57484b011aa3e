"""Derived variants are real lossy re-quantizations, cached with a manifest."""
import json

import pytest

from quantscreen.engine.checkpoint import inspect_checkpoint
from quantscreen.engine.derive import derive, rtn_quantize
from quantscreen.records.digest import sha256_file


def test_rtn_quantize_error_is_bounded_by_half_a_step():
    import torch

    torch.manual_seed(0)
    w = torch.randn(8, 200)  # 200 is not a multiple of 64: the last group is ragged
    q = rtn_quantize(w, bits=4, group=64)
    for start in range(0, 200, 64):
        block, qblock = w[:, start:start + 64], q[:, start:start + 64]
        step = (block.max(1).values - block.min(1).values) / 15
        assert torch.all((block - qblock).abs() <= step.unsqueeze(1) * 0.51 + 1e-4)
        assert all(len(torch.unique(row)) <= 16 for row in qblock)
    assert not torch.equal(q, w)


def test_gguf_requantization_is_lossy_and_cached(tmp_path, smollm2_path):
    digest = sha256_file(smollm2_path)
    out = derive(smollm2_path, digest, "gguf:Q4_0", tmp_path)
    info = inspect_checkpoint(out)
    assert info.format == "gguf:Q4_0" and info.bits_per_weight == pytest.approx(4.5)
    manifest = json.loads((out.parent / "quantscreen_manifest.json").read_text())
    assert manifest["recipe"] == "gguf:Q4_0" and manifest["source_sha256"] == digest
    assert manifest["tool"].startswith("gguf ") and info.made_by == manifest["tool"]
    mtime = out.stat().st_mtime_ns
    assert derive(smollm2_path, digest, "gguf:Q4_0", tmp_path) == out and out.stat().st_mtime_ns == mtime

    import gguf
    from gguf import quants
    import numpy as np

    src = {t.name: t for t in gguf.GGUFReader(smollm2_path).tensors}
    new = {t.name: t for t in gguf.GGUFReader(out).tensors}
    name = "blk.0.ffn_down.weight"
    a = quants.dequantize(src[name].data, src[name].tensor_type)
    b = quants.dequantize(new[name].data, new[name].tensor_type)
    assert a.shape == b.shape and 0 < np.abs(a - b).mean() < 0.1 * np.abs(a).mean()


@pytest.mark.slow
def test_llamacpp_ladder_level_has_manifest_and_real_type_mix(tmp_path, smollm2_path):
    pytest.importorskip("llama_cpp")
    digest = sha256_file(smollm2_path)
    out = derive(smollm2_path, digest, "llamacpp:Q3_K_S", tmp_path)
    manifest = json.loads((out.parent / "quantscreen_manifest.json").read_text())
    assert manifest["recipe"] == "llamacpp:Q3_K_S" and manifest["source_sha256"] == digest
    assert manifest["tool"].startswith("llama.cpp via llama-cpp-python ") and manifest["seconds"] >= 0
    f16 = inspect_checkpoint(manifest["intermediate"])
    assert f16.format == "gguf:F16" and f16.bits_per_weight == 16.0
    info = inspect_checkpoint(out)
    assert info.format == "gguf:Q3_K_S" and info.made_by == manifest["tool"]
    # SmolLM2 is 576 wide, not a multiple of 256: llama.cpp falls back to legacy types for those tensors.
    assert "Q3_K" in info.tensor_types and set(info.tensor_types) - {"Q3_K", "Q6_K", "Q8_0"}
    assert sum(info.tensor_types.values()) == sum(f16.tensor_types.values())
    assert 3.0 < info.bits_per_weight < 8.0
    assert (out.parent / "llama_quantize.log").stat().st_size > 0  # llama.cpp's per-tensor log, off the terminal


def test_recipes_are_validated():
    from quantscreen.engine.derive import validate_recipe
    from quantscreen.records.errors import ScreenInputError

    for ok in ("gptq:w4g128", "awq:w4g64", "llamacpp:Q2_K", "llamacpp:Q5_K_M", "gguf:Q8_0", "rtn:w4g128"):
        validate_recipe(ok)
    for bad in ("gptq:w5g128", "awq:w4g8", "llamacpp:Q9_K", "gguf:Q4_K_M", "exl2:4.0"):
        with pytest.raises(ScreenInputError, match="is not a known recipe"):
            validate_recipe(bad)
