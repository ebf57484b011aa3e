"""GPTQ/AWQ folders and GGUF k-quant mixes recognised from headers; engine choice; degenerate output; calibration."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantscreen.engine.checkpoint import inspect_checkpoint
from quantscreen.records.errors import ScreenInputError
from tests.conftest import build_tiny_llama


def _quantized_folder(tmp_path: Path, method: str, bits: int = 4, group: int = 16, meta=None) -> Path:
    """A tiny Llama folder whose linear layers are replaced by packed GPTQ/AWQ-shaped tensors (header facts only)."""
    import torch
    from safetensors.torch import load_file, save_file

    folder = build_tiny_llama(tmp_path / method, dtype="float16")
    tensors = load_file(folder / "model.safetensors")
    packed = {}
    for name, t in tensors.items():
        if name.endswith(("proj.weight",)) and ".layers." in name:
            out_f, in_f = t.shape
            base = name[: -len(".weight")]
            if method == "gptq":
                packed[f"{base}.qweight"] = torch.zeros(in_f * bits // 32, out_f, dtype=torch.int32)
                packed[f"{base}.g_idx"] = torch.zeros(in_f, dtype=torch.int32)
            else:
                packed[f"{base}.qweight"] = torch.zeros(in_f, out_f * bits // 32, dtype=torch.int32)
            packed[f"{base}.qzeros"] = torch.zeros(in_f // group, out_f * bits // 32, dtype=torch.int32)
            packed[f"{base}.scales"] = torch.zeros(in_f // group, out_f, dtype=torch.float16)
        else:
            packed[name] = t
    save_file(packed, folder / "model.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": method, "bits": bits, "group_size": group,
                                  **({"meta": meta} if meta else {})}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_gptq_and_awq_folders(tmp_path, method):
    folder = _quantized_folder(tmp_path, method, meta={"quantizer": ["gptqmodel:7.6.0"]})
    info = inspect_checkpoint(folder)
    assert (info.kind, info.format, info.quant_method, info.bits, info.group_size) == \
        ("hf", f"{method}-w4g16", method, 4, 16)
    assert info.quant_label == f"{method.upper()}-W4G16" and info.made_by == "gptqmodel:7.6.0"
    # Linear layers: 4 bits + (16-bit scale + 4-bit zero) / 16 per weight; embeddings stay fp16 (16 bits).
    import torch
    from safetensors.torch import load_file

    tensors = load_file(folder / "model.safetensors")
    lin = sum(t.numel() * 32 // 4 for n, t in tensors.items() if n.endswith(".qweight"))
    dense = sum(t.numel() for n, t in tensors.items() if t.dim() >= 2 and not n.endswith(
        (".qweight", ".qzeros", ".scales")))
    storage = sum(t.numel() * t.element_size() * 8 for n, t in tensors.items()
                  if n.endswith((".qweight", ".qzeros", ".scales", ".g_idx")) or (t.dim() >= 2))
    assert info.bits_per_weight == pytest.approx(storage / (lin + dense), abs=1e-3)
    assert 4.0 < storage / (lin + dense) < 16.0 and torch is not None


def test_quantized_folder_without_maker_says_unknown(tmp_path):
    assert inspect_checkpoint(_quantized_folder(tmp_path, "awq")).made_by.startswith("unknown (awq")


@pytest.mark.parametrize("cfg, fragment", [
    ({"quant_method": "bitsandbytes", "bits": 4, "group_size": 64}, "'bitsandbytes'"),
    ({"quant_method": "gptq", "bits": 5, "group_size": 64}, "bits is 5"),
    ({"quant_method": "gptq", "bits": 4, "group_size": "x"}, "group_size is 'x'"),
])
def test_unloadable_quantization_config(tmp_path, cfg, fragment):
    folder = _quantized_folder(tmp_path, "gptq")
    data = json.loads((folder / "config.json").read_text())
    data["quantization_config"] = cfg
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ScreenInputError, match=fragment) as exc:
        inspect_checkpoint(folder)
    assert "config.json" in str(exc.value) and "fix:" in str(exc.value)


def _tiny_gguf(path: Path, types: dict) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b"])
    rng = np.random.default_rng(0)
    for name, qtype in types.items():
        values = rng.standard_normal((8, 256)).astype(np.float32)
        if qtype == "F32":
            writer.add_tensor(name, values)
        else:
            t = gguf.GGMLQuantizationType[qtype]
            writer.add_tensor(name, gguf.quants.quantize(values, t), raw_dtype=t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_type_mix_and_true_bits_per_weight(tmp_path):
    a = inspect_checkpoint(_tiny_gguf(tmp_path / "a.gguf", {"x.weight": "Q8_0", "y.weight": "Q4_0"}))
    assert a.tensor_types == {"Q4_0": 1, "Q8_0": 1}
    assert a.bits_per_weight == pytest.approx((8.5 + 4.5) / 2)
    same = inspect_checkpoint(_tiny_gguf(tmp_path / "b.gguf", {"x.weight": "Q8_0", "y.weight": "Q4_0"}))
    swapped = inspect_checkpoint(_tiny_gguf(tmp_path / "c.gguf", {"x.weight": "Q4_0", "y.weight": "Q8_0"}))
    assert a.type_mix_sha256 == same.type_mix_sha256 != swapped.type_mix_sha256
    assert swapped.tensor_types == a.tensor_types  # equal counts, different assignment: distinct levels


def test_cells_with_equal_type_mix_are_flagged():
    from quantscreen.verdicts.table import mark_same_type_mix

    rows = [{"model": "m", "cell_id": "m-Q3_K_S", "type_mix_sha256": "x"},
            {"model": "m", "cell_id": "m-Q2_K", "type_mix_sha256": "x"},
            {"model": "m", "cell_id": "m-Q4_K_M", "type_mix_sha256": "y"},
            {"model": "other", "cell_id": "other-Q2_K", "type_mix_sha256": "x"},
            {"model": "m", "cell_id": "m-GPTQ", "type_mix_sha256": ""}]
    flags = {r["cell_id"]: r["same_type_mix_as"] for r in mark_same_type_mix(rows)}
    assert flags == {"m-Q3_K_S": "m-Q2_K", "m-Q2_K": "m-Q3_K_S", "m-Q4_K_M": "", "other-Q2_K": "", "m-GPTQ": ""}


def test_engine_choice(tmp_path, smollm2_path, monkeypatch):
    from quantscreen.engine import llamacpp
    from quantscreen.pipeline.workspace import choose_engine

    gguf_info = inspect_checkpoint(smollm2_path)
    hf_info = inspect_checkpoint(build_tiny_llama(tmp_path / "hf"))
    monkeypatch.setattr(llamacpp, "available", lambda: True)
    assert choose_engine("auto", gguf_info, gguf_info) == "llamacpp"
    assert choose_engine("auto", hf_info, gguf_info) == "transformers"  # one engine for cell and baseline
    assert choose_engine("auto", gguf_info, hf_info) == "transformers"
    assert choose_engine("transformers", gguf_info, gguf_info) == "transformers"
    with pytest.raises(ScreenInputError, match="not a GGUF file"):
        choose_engine("llamacpp", hf_info, gguf_info)
    monkeypatch.setattr(llamacpp, "available", lambda: False)
    assert choose_engine("auto", gguf_info, gguf_info) == "transformers"
    with pytest.raises(ScreenInputError, match="needs llama-cpp-python"):
        choose_engine("llamacpp", gguf_info, gguf_info)


@pytest.mark.parametrize("text, bad", [
    ("", True), ("   ", True), ("E E E E E E", True), ("EEEEEEEEEEEE", True), ("!!!!!!!!!!!!!!!", True),
    ("I cannot help with that.", False), ("Sure", False), ("ok ok", False), ("def f(x): return x", False),
])
def test_degenerate(text, bad):
    from quantscreen.pipeline.measure import degenerate

    assert degenerate(text) is bad


def test_calibration_texts_are_fixed_and_hold_no_harmful_prompt():
    from quantscreen import promptsets
    from quantscreen.engine.quantize import calibration_texts

    texts, record = calibration_texts(32)
    again, record2 = calibration_texts(32)
    assert texts == again and record == record2 and len(texts) == 32
    assert record["calibration_sha256"] and "standard-library" in record["calibration_source"]
    joined = "\n".join(texts).lower()
    harmful = promptsets.advbench(520, 0).prompts
    assert not any(p.lower() in joined for p in harmful)


def test_group_size_must_divide_the_widths(tmp_path):
    from quantscreen.engine.quantize import check_group_size

    folder = build_tiny_llama(tmp_path / "m")  # hidden 32, intermediate 64
    check_group_size(folder, 32)
    with pytest.raises(ScreenInputError, match="does not divide") as exc:
        check_group_size(folder, 128)
    assert "group size 32" in str(exc.value)


def test_unknown_engine_in_models_yaml(tmp_path):
    from quantscreen.pipeline.plan import load_plan

    models = tmp_path / "models.yaml"
    models.write_text("models:\n  - id: m\n    baseline: embedded:smollm2\n    engine: tensorrt\n"
                      "    quants:\n      - {id: Q4_0, derive: 'gguf:Q4_0'}\n")
    with pytest.raises(ScreenInputError, match=r"models\[0\]\.engine \(line 4\): 'tensorrt' is not one of auto, "
                                               r"transformers, llamacpp, openai, vllm"):
        load_plan(models, {})
