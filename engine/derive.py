"""Derive real lossy quantized variants of a reference GGUF, cached with a manifest.

Recipes (a recipe string names the tool and its setting):
- ``gguf:<TYPE>`` (Q8_0, Q5_1, Q5_0, Q4_1, Q4_0, F16): every 2-D weight tensor of the source is dequantized and
  re-quantized to TYPE with the `gguf` package's reference quantizer; 1-D tensors (norms) stay F32. All 2-D
  tensors, the tied embedding included, get TYPE: harsher than llama.cpp's mixed choices, and documented as such.
- ``rtn:w<BITS>g<GROUP>``: round-to-nearest asymmetric integer quantization of every linear layer inside the
  transformer blocks (embeddings and head untouched), one scale and zero point per GROUP input columns (a ragged
  last group where GROUP does not divide the width), written as an fp16 safetensors folder of the dequantized
  values. Effective bits per weight = BITS + 32 / GROUP (fp16 scale and zero per group).

The output sits under ``<cache>/derived/<source digest>/<recipe>/`` with ``quantscreen_manifest.json`` (recipe, tool
and version, source path and digest). It is written to a temporary folder and renamed into place, under a file
lock, so parallel workers derive it once and a killed run never leaves half a checkpoint.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import time
from pathlib import Path

from quantscreen.engine.checkpoint import MANIFEST_NAME
from quantscreen.records.errors import ScreenInputError

GGUF_REQUANT_TYPES = ("F16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")
_RTN = re.compile(r"^rtn:w(\d+)g(\d+)$")
_GPTQ_AWQ = re.compile(r"^(gptq|awq):w(\d+)g(\d+)$")
REFERENCE = "reference"  # the fp16 HF folder of a GGUF baseline's dequantized weights (input to GPTQ/AWQ)


def recipe_slug(recipe: str) -> str:
    return recipe.replace(":", "-")


def validate_recipe(recipe: str) -> None:
    from quantscreen.engine.quantize import LLAMACPP_TYPES

    if recipe == REFERENCE or (recipe.startswith("gguf:") and recipe[5:] in GGUF_REQUANT_TYPES):
        return
    if recipe.startswith("llamacpp:") and recipe[9:] in LLAMACPP_TYPES:
        return
    m = _RTN.match(recipe)
    if m and 2 <= int(m.group(1)) <= 8 and int(m.group(2)) >= 8:
        return
    m = _GPTQ_AWQ.match(recipe)
    if m and int(m.group(2)) in (2, 3, 4, 8) and int(m.group(3)) >= 16:
        return
    raise ScreenInputError(f"derive: {recipe}", "is not a known recipe",
                           f"use gptq:w4g<group>, awq:w4g<group>, llamacpp:<{'|'.join(LLAMACPP_TYPES)}>, "
                           f"gguf:<{'|'.join(GGUF_REQUANT_TYPES)}> or rtn:w<2-8>g<group>")


def produces_gguf(recipe: str) -> bool:
    return recipe.startswith(("gguf:", "llamacpp:"))


def derived_path(cache_dir: Path, source_digest: str, recipe: str, source_name: str) -> Path:
    """Where the derived checkpoint lives (a .gguf file or a folder); known before it exists."""
    folder = cache_dir / "derived" / source_digest[:16] / recipe_slug(recipe)
    if produces_gguf(recipe):
        stem = re.sub(r"\.(F16|F32|BF16|I?Q\d\w*)$", "", re.sub(r"\.gguf$", "", source_name, flags=re.I), flags=re.I)
        return folder / f"{stem}.{recipe.split(':', 1)[1]}.gguf"
    return folder / "model"


def derive(source: Path, source_digest: str, recipe: str, cache_dir: Path) -> Path:
    from filelock import FileLock

    validate_recipe(recipe)
    target = derived_path(cache_dir, source_digest, recipe, source.name)
    folder = target.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / MANIFEST_NAME).is_file() and target.exists():
            return target
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tmp_target = tmp / target.name
        started = time.perf_counter()
        tool, extra = _produce(source, source_digest, recipe, cache_dir, tmp_target)
        manifest = {"recipe": recipe, "tool": tool, "source": str(source), "source_sha256": source_digest,
                    "seconds": round(time.perf_counter() - started, 1), **extra}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if tmp_target.is_dir():  # the HF folder reads its own manifest for format and bits per weight
            (tmp_target / MANIFEST_NAME).write_text(json.dumps({**manifest, "model_name": _model_name(source)},
                                                               indent=2, sort_keys=True))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return target


def _produce(source: Path, source_digest: str, recipe: str, cache_dir: Path, out: Path) -> tuple[str, dict]:
    from quantscreen.engine import quantize

    if recipe.startswith("gguf:"):
        return _requantize_gguf(source, recipe[5:], out), {}
    if recipe.startswith("llamacpp:"):
        if not _is_gguf(source):
            raise ScreenInputError(source, f"recipe {recipe} needs a GGUF baseline",
                                   "use a GGUF baseline (its F16 copy feeds llama.cpp's quantizer), or gptq:/awq:/rtn:")
        f16 = derive(source, source_digest, "gguf:F16", cache_dir)
        return quantize.llamacpp_quantize(f16, recipe[9:], out), {"intermediate": str(f16)}
    if recipe == REFERENCE:
        return _reference_folder(source, out), {"format": "fp16", "quant_label": "fp16"}
    m = _GPTQ_AWQ.match(recipe)
    if m:
        method, bits, group = m.group(1), int(m.group(2)), int(m.group(3))
        reference = derive(source, source_digest, REFERENCE, cache_dir) if _is_gguf(source) else source
        tool, extra = quantize.gptq_or_awq(reference, method, bits, group, out)
        return tool, {**extra, "intermediate": str(reference)}
    bits, group = map(int, _RTN.match(recipe).groups())
    tool = _rtn_folder(source, bits, group, out)
    return tool, {"bits": bits, "group_size": group, "bits_per_weight": bits + 32 / group,
                  "format": f"rtn-w{bits}g{group}", "quant_label": f"RTN-W{bits}G{group}"}


def _is_gguf(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".gguf"


def _model_name(source: Path) -> str:
    from quantscreen.engine.checkpoint import inspect_checkpoint
    return inspect_checkpoint(source).display_name


def _requantize_gguf(source: Path, type_name: str, out: Path) -> str:
    import gguf
    import numpy as np
    from gguf import quants

    qtype = gguf.GGMLQuantizationType[type_name]
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        sub = fld.types[1] if len(fld.types) > 1 else None
        writer.add_key_value(key, fld.contents(), fld.types[0], sub_type=sub)
    file_type = {"F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0", "Q5_1": "MOSTLY_Q5_1", "Q5_0": "MOSTLY_Q5_0",
                 "Q4_1": "MOSTLY_Q4_1", "Q4_0": "MOSTLY_Q4_0"}[type_name]
    writer.add_file_type(gguf.LlamaFileType[file_type].value)
    for t in reader.tensors:
        values = np.asarray(t.data) if t.tensor_type == gguf.GGMLQuantizationType.F32 \
            else quants.dequantize(t.data, t.tensor_type)
        values = values.astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
        if values.ndim >= 2:
            if qtype == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(t.name, values.astype(np.float16))
            else:
                writer.add_tensor(t.name, quants.quantize(values, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return f"gguf {importlib.metadata.version('gguf')} (reference quantizer)"


def rtn_quantize(weight, bits: int, group: int):
    """Round-to-nearest asymmetric quantization along the input dimension; returns the dequantized tensor."""
    import torch

    w = weight.detach().to(torch.float32)
    out = torch.empty_like(w)
    qmax = 2 ** bits - 1
    for start in range(0, w.shape[1], group):
        block = w[:, start:start + group]
        lo = block.min(dim=1, keepdim=True).values
        hi = block.max(dim=1, keepdim=True).values
        scale = ((hi - lo) / qmax).clamp(min=1e-8).to(torch.float16).to(torch.float32)
        zero = torch.round(-lo / scale).clamp(0, qmax)
        q = torch.clamp(torch.round(block / scale) + zero, 0, qmax)
        out[:, start:start + group] = (q - zero) * scale
    return out


def _write_plain_folder(source: Path, out: Path, edit=None) -> None:
    """Load `source` (GGUF or HF), optionally edit its weights in place, and save an fp16 safetensors folder."""
    import torch

    from quantscreen.engine.checkpoint import inspect_checkpoint
    from quantscreen.engine.loader import build_plain_model, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(inspect_checkpoint(source), chat_template=None, device="cpu")
    if edit is not None:
        with torch.no_grad():
            edit(model)
    plain = build_plain_model(model, dtype=torch.float16)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not any((out / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
        raise ScreenInputError(out, "tokenizer was not written", "report this as a bug")


def _torch_tools() -> str:
    import torch

    return f"torch {torch.__version__}, transformers {importlib.metadata.version('transformers')}"


def _reference_folder(source: Path, out: Path) -> str:
    """The dequantized weights of a GGUF as an fp16 HF folder (transformers cannot save a GGUF-loaded model)."""
    _write_plain_folder(source, out)
    return f"quantscreen reference ({_torch_tools()}, gguf {importlib.metadata.version('gguf')})"


def _rtn_folder(source: Path, bits: int, group: int, out: Path) -> str:
    import torch

    def edit(model):
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}.":
                module.weight.copy_(rtn_quantize(module.weight, bits, group))

    _write_plain_folder(source, out, edit)
    return f"quantscreen rtn ({_torch_tools()})"
