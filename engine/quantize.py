"""Tool-backed quantization recipes: GPTQ and AWQ through gptqmodel, the GGUF k-quant ladder through llama.cpp.

Each function writes one checkpoint into `out` and returns (tool and version, manifest extras). `engine.derive` owns
the cache layout, the lock and the atomic rename; nothing here decides where a checkpoint lives.

Calibration (GPTQ and AWQ) uses text the harness does not evaluate on and that holds no harmful request: the
docstrings of Python standard-library modules, read from the running interpreter, cut into chunks. The texts'
digest and the Python version go into the manifest, so a derived checkpoint names the exact calibration it saw.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from quantscreen.records.digest import sha256_json
from quantscreen.records.errors import ScreenInputError

CALIBRATION_MODULES = ("json", "csv", "textwrap", "argparse", "collections", "itertools", "functools", "pathlib",
                       "re", "string", "datetime", "decimal", "fractions", "statistics", "random", "heapq", "bisect",
                       "difflib", "email", "html", "logging", "sqlite3", "threading", "unittest", "zipfile")
CALIBRATION_CHARS = 1200
# llama.cpp's quantize types the ladder uses (and a few neighbours); names as llama.cpp's ftype enum spells them.
LLAMACPP_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S",
                  "Q2_K")


def calibration_texts(n: int) -> tuple[list[str], dict]:
    """`n` chunks of standard-library docstrings, and the record that identifies them."""
    chunks = []
    for name in CALIBRATION_MODULES:
        module = importlib.import_module(name)
        docs = [module.__doc__ or ""] + [getattr(getattr(module, attr), "__doc__", None) or ""
                                         for attr in sorted(dir(module)) if not attr.startswith("_")]
        paragraphs = [" ".join(p.split()) for doc in docs for p in doc.strip().split("\n\n") if len(p.split()) >= 8]
        text = ""
        for para in dict.fromkeys(paragraphs):  # once each, in order (aliases share docstrings)
            text = f"{text}\n\n{para}" if text else para
            if len(text) >= CALIBRATION_CHARS:
                chunks.append(text[:CALIBRATION_CHARS])
                text = ""
        if text:
            chunks.append(text)
    if len(chunks) < n:
        raise ScreenInputError("calibration", f"only {len(chunks)} standard-library text chunks, {n} wanted",
                               "ask for fewer calibration samples")
    chunks = chunks[:n]
    record = {"calibration_source": f"Python {platform.python_version()} standard-library docstrings "
                                    f"({', '.join(CALIBRATION_MODULES)})",
              "calibration_samples": n, "calibration_sha256": sha256_json(chunks)}
    return chunks, record


def gptqmodel_env() -> None:
    # gptqmodel sizes a CPU worker pool from the machine; on 2 cores it must be told, and torch.compile would
    # recompile its kernels on every call.
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(2, os.cpu_count() or 1))))
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")


def _require(dist: str, purpose: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ScreenInputError(dist, f"is not installed ({purpose})",
                               "run scripts/test or scripts/screen once: they install requirements.txt") from None


def check_group_size(reference: Path, group: int) -> None:
    """GPTQ and AWQ kernels need the group size to divide every quantized layer's input width."""
    import json

    cfg = json.loads((reference / "config.json").read_text())
    widths = {int(cfg[k]) for k in ("hidden_size", "intermediate_size") if cfg.get(k)}
    bad = sorted(w for w in widths if w % group)
    if bad:
        fits = [g for g in (128, 64, 32) if all(w % g == 0 for w in widths)]
        raise ScreenInputError(f"group size {group}", f"does not divide the layer width(s) {bad} of {reference.name}",
                               f"use group size {fits[0] if fits else 'a divisor of ' + str(sorted(widths))}")


def gptq_or_awq(reference: Path, method: str, bits: int, group: int, out: Path, samples: int = 32) -> tuple[str, dict]:
    """Quantize an HF reference folder with gptqmodel (GPTQ, or AWQ with the torch backend) and save it to `out`."""
    gptqmodel_env()
    version = _require("gptqmodel", f"{method.upper()} quantization")
    check_group_size(reference, group)
    from gptqmodel import GPTQModel
    from gptqmodel.quantization import AWQConfig, GPTQConfig

    texts, record = calibration_texts(samples)
    config = (AWQConfig if method == "awq" else GPTQConfig)(bits=bits, group_size=group)
    reference, out = reference.resolve(), out.resolve()
    # gptqmodel writes its per-layer logs to ./logs: keep them beside the checkpoint, not in the user's folder.
    with contextlib.chdir(out.parent):
        model = GPTQModel.load(str(reference), config, device="cpu")
        kwargs = {"backend": "awq_torch"} if method == "awq" else {}
        model.quantize(texts, batch_size=1, **kwargs)
        model.save(str(out))
        del model
    return f"gptqmodel {version}", {"bits": bits, "group_size": group, **record}


def llamacpp_quantize(f16_gguf: Path, type_name: str, out: Path) -> str:
    """llama.cpp's own quantizer (through llama-cpp-python) from an F16 GGUF to `type_name`."""
    version = _require("llama-cpp-python", "the GGUF k-quant ladder")
    import ctypes

    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{type_name}", None)
    if ftype is None:
        raise ScreenInputError(f"llamacpp:{type_name}", "is not a llama.cpp quantization type",
                               f"use one of {', '.join(LLAMACPP_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    log = out.with_name("llama_quantize.log")
    with stderr_to(log):  # llama.cpp prints a line per tensor on the C stderr; keep it beside the checkpoint
        rc = llama_cpp.llama_model_quantize(str(f16_gguf).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.is_file():
        raise ScreenInputError(f16_gguf, f"llama.cpp failed to quantize it to {type_name} (return code {rc}; "
                               f"its log: {log})", "check the file is an F16 GGUF of a llama.cpp-supported architecture")
    return f"llama.cpp via llama-cpp-python {version}"


@contextlib.contextmanager
def stderr_to(path: Path):
    """Send stderr to `path` for the duration of the block: file descriptor 2, where C code writes, and
    sys.stderr, where llama-cpp-python's log callback writes llama.cpp's messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a", encoding="utf-8") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            with contextlib.redirect_stderr(fh):
                yield
        finally:
            fh.flush()
            os.dup2(saved, 2)
            os.close(saved)
