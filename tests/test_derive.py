"""Derived variants are real lossy re-quantizations, cached with a manifest."""
import json

import pytest

from engine.checkpoint import inspect_checkpoint
from engine.derive import derive, rtn_quantize
from engine.digest import sha256_file


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
