"""Format detection from headers, and one clear error per kind of broken checkpoint."""
import json

import pytest

from quantscreen.engine.checkpoint import inspect_checkpoint
from quantscreen.records.errors import ScreenInputError
from tests.conftest import build_tiny_llama


def test_tiny_hf_folder_fp32_and_fp16(tmp_path):
    info = inspect_checkpoint(build_tiny_llama(tmp_path / "f32"))
    assert (info.kind, info.format, info.bits_per_weight, info.architecture) == ("hf", "fp32", 32.0, "llama")
    assert info.has_chat_template and info.vocab_size > 0
    half = inspect_checkpoint(build_tiny_llama(tmp_path / "f16", dtype="float16"))
    assert (half.format, half.bits_per_weight) == ("fp16", 16.0)
    assert "model.safetensors" in half.digest_files and "tokenizer.json" in half.digest_files


def test_embedded_gguf(smollm2_path):
    info = inspect_checkpoint(smollm2_path)
    assert info.kind == "gguf" and info.format == "gguf:Q4_1" and info.quant_label == "Q4_1"
    assert info.architecture == "llama" and info.vocab_size == 49152 and info.has_chat_template
    assert 4.5 < info.bits_per_weight < 8.5  # Q4_1 blocks plus a Q8_0 embedding
    assert info.display_name == "smollm2-135m"


def expect_error(path, fragment, names=None):
    with pytest.raises(ScreenInputError) as info:
        inspect_checkpoint(path)
    message = str(info.value)
    assert fragment in message and str(names or path) in message and "fix:" in message
    return message


def test_missing_path(tmp_path):
    expect_error(tmp_path / "nope", "does not exist")


def test_empty_folder(tmp_path):
    expect_error(tmp_path, "is an empty folder")


def test_truncated_safetensors(tiny_llama):
    weights = tiny_llama / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    expect_error(tiny_llama, "is truncated", names=weights)


def test_corrupt_safetensors_header(tiny_llama):
    (tiny_llama / "model.safetensors").write_bytes(b"\xff" * 64)
    expect_error(tiny_llama, "not a valid safetensors file", names=tiny_llama / "model.safetensors")


def test_pickle_only_folder_is_refused(tiny_llama):
    (tiny_llama / "model.safetensors").rename(tiny_llama / "pytorch_model.bin")
    expect_error(tiny_llama, "pickle weights")


def test_missing_tokenizer(tiny_llama):
    (tiny_llama / "tokenizer.json").unlink()
    expect_error(tiny_llama, "has no tokenizer")


def test_unknown_quantization_method(tiny_llama):
    cfg = json.loads((tiny_llama / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "mystery-4bit"}
    (tiny_llama / "config.json").write_text(json.dumps(cfg))
    expect_error(tiny_llama, "names quantization method 'mystery-4bit'", names=tiny_llama / "config.json")


def test_folder_of_ggufs_points_at_the_file(tmp_path, smollm2_path):
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    msg = expect_error(tmp_path, "has no config.json")
    assert "x.gguf" in msg


def test_truncated_gguf(tmp_path, smollm2_path):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(4 << 20))
    expect_error(cut, "truncated")


def test_garbage_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    expect_error(bad, "not a readable GGUF file")


def test_non_gguf_file(tmp_path):
    f = tmp_path / "weights.txt"
    f.write_text("hello")
    expect_error(f, "not a GGUF file")
