"""The vLLM engine (engine.vllm_engine, `pip install "quantscreen[vllm]"`): refused in one line where it cannot run,
and, on a GPU machine with vLLM installed, a fp16 baseline and a GPTQ cell derived from the shipped SmolLM2 screened
end to end through it."""
from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quantscreen.engine import vllm_engine
from quantscreen.records.errors import ScreenInputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(vllm_engine.available(), reason="vLLM is installed here")
def test_engine_vllm_without_vllm_stops_before_any_load_naming_the_extra(tmp_path, tiny_llama):
    f = tmp_path / "models.yaml"
    f.write_text(textwrap.dedent(f"""
        probes: {{enabled: false}}
        judge: {{enabled: false, accuracy: none}}
        models:
          - {{id: m, engine: vllm, baseline: {tiny_llama}, quants: [{{id: q, path: {tiny_llama}}}]}}
        """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "screens/", f"--models={f}", f"--cache-dir={tmp_path}/c",
                           f"--output-dir={tmp_path}/o"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "engine vllm: needs vLLM, which is not installed" in proc.stderr and "quantscreen[vllm]" in proc.stderr


def test_vllm_needs_a_gpu_and_its_own_cache_types(monkeypatch):
    monkeypatch.setattr(vllm_engine, "available", lambda: True)  # the checks after "is it installed"
    with pytest.raises(ScreenInputError, match="runs on a CUDA GPU, but the device is cpu"):
        vllm_engine.check_usable("cpu")
    with pytest.raises(ScreenInputError, match="is not a KV cache type vLLM runs"):
        vllm_engine.check_usable("cuda:0", "q4_0")
    vllm_engine.check_usable("cuda:1", "fp8")


def test_engine_vllm_takes_hugging_face_folders_only(smollm2_path, tiny_llama):
    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.pipeline.workspace import choose_engine

    hf, gguf = inspect_checkpoint(tiny_llama), inspect_checkpoint(smollm2_path)
    assert choose_engine("vllm", hf, hf) == "vllm"
    with pytest.raises(ScreenInputError, match="is not a Hugging Face folder, so engine vllm does not run it"):
        choose_engine("vllm", gguf, hf)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not vllm_engine.available(), reason='vLLM is not installed (pip install "quantscreen[vllm]")')
def test_a_gptq_cell_screens_end_to_end_in_vllm(smollm2_path, tmp_path):
    """fp16 reference and GPTQ w4g128 derived from the shipped SmolLM2, both through vLLM on the GPU."""
    from quantscreen.engine.derive import REFERENCE, derive
    from quantscreen.records.digest import sha256_file

    base = derive(smollm2_path, sha256_file(smollm2_path), REFERENCE, tmp_path / "cache")
    f = tmp_path / "models.yaml"
    f.write_text(textwrap.dedent(f"""
        judge: {{enabled: false, accuracy: none}}
        kld: {{enabled: false}}
        probes: {{enabled: false}}
        prompts: {{harmful: {{source: advbench, n: 16}}, harmless: {{n: 8}}, quality: {{n: 8}}, benign: {{n: 8}}}}
        models:
          - id: smol
            engine: vllm
            baseline: {base}
            quants: [{{id: GPTQ, derive: "gptq:w4g128"}}, {{id: KV_fp8, kv_cache: fp8}}]
        """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "screens/", f"--models={f}", "--device=cuda",
                           f"--cache-dir={tmp_path}/cache", f"--output-dir={tmp_path}/out"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / "out" / "cells.csv", newline="") as fh:
        rows = {r["cell_id"]: r for r in csv.DictReader(fh)}
    assert rows["smol-GPTQ"]["engine"] == "vllm" and rows["smol-GPTQ"]["regime"]
    assert "VLLM_BATCH_INVARIANT=1" in rows["smol-GPTQ"]["loaded_by"]
    assert rows["smol-KV_fp8"]["format"].endswith("+ KV fp8")
