"""Recognise a checkpoint on disk from its headers alone: format, bits per weight, architecture, tokenizer.

Nothing here loads weights; every check reads a header, so bad input is caught before any model work starts.
Supported: GGUF files (any tensor type the `gguf` package can dequantize) and Hugging Face folders with
safetensors weights (fp16/bf16/fp32, or a folder the harness derived itself with a `quantscreen_manifest.json`).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from quantscreen.records.digest import sha256_json
from quantscreen.records.errors import ScreenInputError

MANIFEST_NAME = "quantscreen_manifest.json"
_SAFETENSORS_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8,
                     "U8": 8, "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8}
_HF_FORMAT_BY_DTYPE = {"F32": "fp32", "F16": "fp16", "BF16": "bf16"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    kind: str  # "gguf" or "hf"
    format: str  # fp16, bf16, fp32, gguf:Q4_0, rtn-w4g128, ...
    bits_per_weight: float
    architecture: str
    vocab_size: int
    weight_files: tuple[str, ...]  # names relative to the folder (or the GGUF file's name)
    has_chat_template: bool
    display_name: str  # a readable default model id, e.g. smollm2-135m
    quant_label: str  # a readable default quant id, e.g. Q4_0, fp16
    group_size: int | None = None
    made_by: str = ""  # tool and version that made the checkpoint, when known
    bits: int | None = None  # nominal bits of the quantized weights (GPTQ/AWQ/RTN), None for GGUF mixes and floats
    quant_method: str | None = None  # gptq | awq for folders that need a quantized kernel to load
    tensor_types: dict = field(default_factory=dict, compare=False)  # GGUF: type -> number of 2-D tensors
    type_mix_sha256: str = ""  # GGUF: digest of the (tensor name, type) assignment, equal for equal mixes
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def folder(self) -> Path:
        return self.path.parent if self.kind == "gguf" else self.path

    @property
    def digest_files(self) -> list[str]:
        """Files whose bytes define this checkpoint's behaviour (weights, config, tokenizer, template)."""
        if self.kind == "gguf":
            return [self.path.name]
        names = set(self.weight_files)
        for name in ("config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja",
                     "chat_template.json", "special_tokens_map.json", MANIFEST_NAME, *_TOKENIZER_FILES):
            if (self.path / name).is_file():
                names.add(name)
        return sorted(names)


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    p = Path(path).expanduser()
    if not p.exists():
        raise ScreenInputError(p, "does not exist", "pass an existing GGUF file or Hugging Face model folder")
    if p.is_file() and p.suffix.lower() == ".safetensors":
        p = p.parent  # a weights file stands for the folder that holds it
    if p.is_file():
        if p.suffix.lower() != ".gguf" and not _has_gguf_magic(p):
            raise ScreenInputError(p, "is a file but not a GGUF file",
                                   "pass a .gguf file, or the folder holding config.json and *.safetensors")
        return _inspect_gguf(p)
    return _inspect_hf_folder(p)


def _has_gguf_magic(p: Path) -> bool:
    with open(p, "rb") as fh:
        return fh.read(4) == b"GGUF"


# ---------------------------------------------------------------------------------------------------- GGUF
def _inspect_gguf(p: Path) -> CheckpointInfo:
    """A GGUF file's facts (architecture, vocabulary, tensor types, bits per weight, chat template), each read from
    the header with the error a user can act on; over 60 lines because each field has its own missing-value case."""
    import gguf

    from quantscreen.engine.gguf_header import GGUFHeaderError, read_header

    try:
        header = read_header(p)
    except (GGUFHeaderError, OSError, ValueError) as exc:
        raise ScreenInputError(p, f"is not a readable GGUF file ({exc})".replace("\n", " "),
                               "re-download or re-convert the file; a truncated copy cannot be loaded") from None
    unsupported, total_bits, total_elems, mix, assignment, elems_by_type = set(), 0, 0, {}, [], {}
    for t in header.tensors:
        try:
            qtype = gguf.GGMLQuantizationType(t.type_id)
        except ValueError:
            unsupported.add(f"type {t.type_id}")
            continue
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_elems = 1
        for d in t.shape:
            n_elems *= d
        n_bytes = n_elems // block * type_size
        if header.data_start + t.offset + n_bytes > header.file_size:
            raise ScreenInputError(p, f"is truncated (tensor {t.name} ends past the end of the file)",
                                   "re-download or re-convert the file")
        if qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) \
                and qtype not in gguf.quants._type_traits:
            unsupported.add(qtype.name)
        if len(t.shape) >= 2:
            total_bits += n_bytes * 8
            total_elems += n_elems
            mix[qtype.name] = mix.get(qtype.name, 0) + 1
            elems_by_type[qtype.name] = elems_by_type.get(qtype.name, 0) + n_elems
            assignment.append((t.name, qtype.name))
    if unsupported:
        raise ScreenInputError(p, f"holds tensor types the gguf package cannot dequantize: {sorted(unsupported)}",
                               "re-quantize to a supported type (Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_S, Q2_K, Q4_0 ...)")
    fields = header.fields
    vocab = header.array_length("tokenizer.ggml.tokens")
    if vocab is None:
        raise ScreenInputError(p, "has no tokenizer (tokenizer.ggml.tokens missing)",
                               "convert it again with llama.cpp's convert_hf_to_gguf.py, which embeds the tokenizer")
    file_type = fields.get("general.file_type")
    try:
        qname = gguf.LlamaFileType(int(file_type)).name.replace("MOSTLY_", "") if file_type is not None else ""
    except (ValueError, TypeError):
        qname = ""
    if not qname or qname == "GUESSED":
        qname = max(elems_by_type, key=elems_by_type.get) if elems_by_type else "F32"
    manifest = _sidecar_manifest(p)
    base = fields.get("general.basename") or fields.get("general.name") or p.stem.split(".")[0]
    size_label = fields.get("general.size_label")
    display = "-".join(x for x in (str(base), str(size_label or "")) if x).lower().replace(" ", "-")
    return CheckpointInfo(
        path=p.resolve(), kind="gguf", format=f"gguf:{qname}",
        bits_per_weight=round(total_bits / total_elems, 4) if total_elems else 0.0,
        architecture=str(fields.get("general.architecture", "")), vocab_size=vocab, weight_files=(p.name,),
        has_chat_template=bool(fields.get("tokenizer.chat_template")),
        display_name=display, quant_label=qname,
        made_by=str(manifest.get("tool") or fields.get("general.quantized_by", "") or ""),
        tensor_types=dict(sorted(mix.items())), type_mix_sha256=sha256_json(sorted(assignment)),
        extra={"manifest": manifest} if manifest else {},
    )


def _sidecar_manifest(p: Path) -> dict:
    """The manifest the harness writes beside a GGUF it derived (recipe, tool, source digest)."""
    side = p.parent / MANIFEST_NAME
    if side.is_file():
        try:
            manifest = json.loads(side.read_text())
        except ValueError:
            return {}
        if str(manifest.get("recipe", "")).startswith(("gguf:", "llamacpp:")):
            return manifest
    return {}


# ---------------------------------------------------------------------------------------------------- HF
def _inspect_hf_folder(p: Path) -> CheckpointInfo:
    entries = list(p.iterdir())
    if not entries:
        raise ScreenInputError(p, "is an empty folder", "point at the folder holding config.json and *.safetensors")
    config_path = p / "config.json"
    if not config_path.is_file():
        ggufs = sorted(x.name for x in entries if x.suffix.lower() == ".gguf")
        hint = f"pass the GGUF file itself, e.g. {p / ggufs[0]}" if ggufs else \
            "point at a Hugging Face model folder (config.json, *.safetensors, tokenizer files)"
        raise ScreenInputError(p, "has no config.json", hint)
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScreenInputError(config_path, f"is not valid JSON ({exc})", "restore the original config.json") from None
    quant = _quantization(config_path, config.get("quantization_config"))
    weight_files = _safetensors_files(p)
    bits, elems, dtype_elems = 0, 0, {}
    for name in weight_files:
        for tensor, dtype, shape in _safetensors_header(p / name):
            numel = _numel(shape)
            storage = _SAFETENSORS_BITS.get(dtype, 16) * numel
            dtype_elems[dtype] = dtype_elems.get(dtype, 0) + numel
            if quant and tensor.endswith(".qweight"):  # packed int32: 32 / bits weights per element
                bits += storage
                elems += numel * 32 // quant["bits"]
            elif quant and tensor.endswith((".qzeros", ".scales", ".g_idx")):
                bits += storage  # per-group metadata of a quantized layer: storage, no weights of its own
            elif len(shape) >= 2:
                bits += storage
                elems += numel
    if not any((p / n).is_file() for n in _TOKENIZER_FILES):
        raise ScreenInputError(p, "has no tokenizer (tokenizer.json, tokenizer.model or vocab.json)",
                               "copy the tokenizer files of the original model into this folder")
    manifest = {}
    if (p / MANIFEST_NAME).is_file():
        manifest = json.loads((p / MANIFEST_NAME).read_text())
    dominant = max(dtype_elems, key=dtype_elems.get)
    if quant:
        fmt = f"{quant['method']}-w{quant['bits']}g{quant['group_size']}"
        label = f"{quant['method'].upper()}-W{quant['bits']}G{quant['group_size']}"
    else:
        fmt = manifest.get("format") or _HF_FORMAT_BY_DTYPE.get(dominant, dominant.lower())
        label = str(manifest.get("quant_label") or fmt)
    measured_bpw = round(bits / elems, 4) if elems else 0.0
    return CheckpointInfo(
        path=p.resolve(), kind="hf", format=fmt,
        bits_per_weight=float(manifest.get("bits_per_weight") or measured_bpw) if not quant else measured_bpw,
        architecture=str(config.get("model_type", "")), vocab_size=int(config.get("vocab_size") or 0),
        weight_files=tuple(weight_files), has_chat_template=_hf_has_chat_template(p),
        display_name=str(manifest.get("model_name") or p.name).lower(),
        quant_label=label, bits=quant["bits"] if quant else None,
        group_size=quant["group_size"] if quant else manifest.get("group_size"),
        made_by=str(manifest.get("tool") or (quant or {}).get("made_by", "")),
        quant_method=quant["method"] if quant else None,
        extra={"manifest": manifest} if manifest else {},
    )


_LOADABLE_METHODS = ("gptq", "awq")


def _quantization(config_path: Path, cfg) -> dict | None:
    """Bits, group size, method and maker of a GPTQ/AWQ folder, from config.json's quantization_config."""
    if not cfg:
        return None
    method = str(cfg.get("quant_method", "?")).lower()
    if method not in _LOADABLE_METHODS:
        raise ScreenInputError(config_path, f"names quantization method '{method}', which this version cannot load",
                               "screen a GPTQ, AWQ, GGUF or fp16/bf16/fp32 safetensors checkpoint")
    bits, group = cfg.get("bits", cfg.get("w_bit")), cfg.get("group_size", cfg.get("q_group_size"))
    if not isinstance(bits, int) or bits not in (2, 3, 4, 8):
        raise ScreenInputError(config_path, f"quantization_config.bits is {bits!r}, not 2, 3, 4 or 8",
                               "restore the config.json the quantizer wrote")
    if not isinstance(group, int) or (group < 1 and group != -1):
        raise ScreenInputError(config_path, f"quantization_config.group_size is {group!r}",
                               "restore the config.json the quantizer wrote")
    meta = cfg.get("meta") or {}
    maker = meta.get("quantizer") if isinstance(meta, dict) else None
    if isinstance(maker, list):
        maker = ", ".join(str(x) for x in maker)
    return {"method": method, "bits": bits, "group_size": group,
            "made_by": str(maker or f"unknown ({method}, {cfg.get('version') or cfg.get('checkpoint_format') or ''})")}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _safetensors_files(p: Path) -> list[str]:
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            raise ScreenInputError(index, f"is not a valid safetensors index ({exc})",
                                   "restore the index file from the original checkpoint") from None
        missing = [s for s in shards if not (p / s).is_file()]
        if missing:
            raise ScreenInputError(p / missing[0], "is listed in model.safetensors.index.json but missing",
                                   "copy every shard of the checkpoint")
        return shards
    files = sorted(x.name for x in p.glob("*.safetensors"))
    if files:
        return files
    if any(p.glob("*.bin")) or any(p.glob("*.pt")) or any(p.glob("*.pth")):
        raise ScreenInputError(p, "holds only pickle weights (*.bin/*.pt), which are never loaded",
                               "convert the checkpoint to safetensors (model.save_pretrained(..., safe_serialization=True))")
    raise ScreenInputError(p, "has no *.safetensors weights", "point at a folder holding the model's safetensors files")


def _safetensors_header(path: Path) -> list[tuple[str, str, tuple]]:
    """(name, dtype, shape) per tensor, after checking that the file is as long as its header says."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError("header length exceeds file size")
            header = json.loads(fh.read(n))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ScreenInputError(path, f"is not a valid safetensors file ({exc})",
                               "re-download or re-save the checkpoint") from None
    out, end = [], 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        out.append((name, meta["dtype"], tuple(int(d) for d in meta["shape"])))
        end = max(end, int(meta["data_offsets"][1]))
    if 8 + n + end > size:
        raise ScreenInputError(path, f"is truncated ({size} bytes, header promises {8 + n + end})",
                               "re-download or re-save the checkpoint")
    return out


def _hf_has_chat_template(p: Path) -> bool:
    if (p / "chat_template.jinja").is_file() or (p / "chat_template.json").is_file():
        return True
    cfg = p / "tokenizer_config.json"
    if cfg.is_file():
        try:
            return bool(json.loads(cfg.read_text()).get("chat_template"))
        except ValueError:
            return False
    return False
