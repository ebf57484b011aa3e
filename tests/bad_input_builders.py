"""How each bad input of the catalogue (tests/bad_inputs.py) is built: tiny checkpoints and broken copies of them,
models.yaml texts, prompt, label and lm-eval files, and the plugins that make a disk full or a GPU absent."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]

# Small enough that a run which does start measuring (the two runtime cases) finishes in seconds on the tiny model.
SMALL = """
decoding: {{max_new_tokens: 4, batch_size: 2}}
prompts:
  harmful: {{source: advbench, n: 2}}
  harmless: {{n: 2}}
  quality: {{n: 2}}
  benign: {{n: 2}}
probes: {{enabled: false}}
judge: {judge}
{extra}models:
  - id: m
    engine: {engine}
    baseline: {baseline}
    quants:
      - {{id: q, {cell}}}
"""


# ------------------------------------------------------------------------------------------------- builders
def tiny(tmp: Path, name: str = "tiny", **kw) -> Path:
    from tests.conftest import build_tiny_llama

    return build_tiny_llama(tmp / name, **kw)


def smollm2() -> str:
    from quantscreen.engine.sources import smollm2_gguf

    return smollm2_gguf().path


def models(tmp: Path, baseline, cell: str, extra: str = "", judge: str = "{enabled: false, accuracy: none}",
           engine: str = "auto") -> list:
    """A models.yaml over `baseline` and one cell (`path: ...` or `derive: ...`)."""
    f = tmp / "models.yaml"
    f.write_text(textwrap.dedent(SMALL.format(baseline=baseline, cell=cell, extra=extra, judge=judge, engine=engine)))
    return [f"--models={f}"]


def tiny_pair(tmp: Path, damage: Callable[[Path], object] = lambda p: None, **kw) -> list:
    """The tiny model as baseline and a copy of it, damaged by `damage`, as the cell (`kw`: models.yaml fields, or
    `chat_template` for the copy)."""
    base, cell = tiny(tmp, "base"), tiny(tmp, "cell", **{k: v for k, v in kw.items() if k == "chat_template"})
    damage(cell)
    return models(tmp, base, f"path: {cell}", **{k: v for k, v in kw.items() if k != "chat_template"})


def prompt_file(name: str, body: bytes, option: str = "--harmful-file") -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        f = tmp / name
        f.write_bytes(body)
        return [*tiny_pair(tmp), f"{option}={f}"]
    return make


def write(f: Path, body: bytes, option: str) -> list:
    f.write_bytes(body)
    return [f"{option}={f}"]


def yaml_text(body: str) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        f = tmp / "models.yaml"
        f.write_text(textwrap.dedent(body).replace("SMOL", "embedded:smollm2"))
        return [f"--models={f}"]
    return make


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def file_cell(tmp: Path, name: str, data: bytes) -> list:
    """A cell that is a file of these bytes, beside the embedded SmolLM2 baseline."""
    (tmp / name).write_bytes(data)
    return models(tmp, "embedded:smollm2", f"path: {tmp / name}")


def cut_gguf(tmp: Path) -> list:
    cut = tmp / "cut.gguf"
    with open(smollm2(), "rb") as src:
        cut.write_bytes(src.read(4 << 20))
    return models(tmp, "embedded:smollm2", f"path: {cut}")


def unsupported_gguf(tmp: Path) -> list:
    """A well-formed GGUF whose one weight is Q8_1, a type the gguf package cannot dequantize."""
    import gguf
    import numpy as np

    f = tmp / "q8_1.gguf"
    w = gguf.GGUFWriter(str(f), "llama")
    _, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1]
    w.add_tensor("blk.0.attn_q.weight", np.zeros((32, type_size), dtype=np.uint8),
                 raw_dtype=gguf.GGMLQuantizationType.Q8_1)  # bytes of one block per row
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return models(tmp, "embedded:smollm2", f"path: {f}")


def other_architecture(tmp: Path) -> list:
    """A real tiny Qwen2 model paired with the tiny Llama baseline."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    base = tiny(tmp, "base")
    cell = tiny(tmp, "cell")
    cfg = json.loads((cell / "config.json").read_text())
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=cfg["vocab_size"], hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    qwen.save_pretrained(cell, safe_serialization=True)
    return models(tmp, base, f"path: {cell}")


def other_vocabulary(tmp: Path) -> list:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, cell = tiny(tmp, "base"), tiny(tmp, "cell")
    tok = AutoTokenizer.from_pretrained(cell)
    tok.add_tokens([f"extra{i}" for i in range(8)])
    model = AutoModelForCausalLM.from_pretrained(cell)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(cell, safe_serialization=True)
    tok.save_pretrained(cell)
    return models(tmp, base, f"path: {cell}")


def nan_weights(cell: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(cell / "model.safetensors")
    weights["model.norm.weight"] = torch.full_like(weights["model.norm.weight"], float("nan"))
    save_file(weights, cell / "model.safetensors", metadata={"format": "pt"})


FULL_DISK = """
import errno, os
real = os.{call}
def pytest_configure(config):
    def full(*args, **kwargs):
        if {only!r} in str(args[-1]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[-1]))
        return real(*args, **kwargs)
    os.{call} = full
"""


def disk_full(call: str, only: str = "") -> Callable[[Path], list]:
    """A run whose `os.<call>` fails as on a full disk (ENOSPC) for paths holding `only`, through a plugin the run
    loads: fsync is the cache's last step of a batch, replace the last step of writing an output table."""
    def make(tmp: Path) -> list:
        plugin = tmp / "plugins" / "full_disk.py"  # run_case puts <tmp>/plugins on the path
        plugin.parent.mkdir()
        plugin.write_text(FULL_DISK.format(call=call, only=only))
        return [*tiny_pair(tmp), "-p", "full_disk"]
    return make


def file_in_the_way(option: str) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        blocker = tmp / "a-file"
        blocker.write_text("not a folder")
        return [*tiny_pair(tmp), f"{option}={blocker / 'results'}"]
    return make


def bad_matrix(tmp: Path) -> list:
    f = tmp / "matrix.csv"
    f.write_text("model,quant,is_baseline,refusal_rate_regex\nm,baseline,true,0.9\nm,Q4,false,lots\n")
    return [*tiny_pair(tmp), f"--matrix={f}"]


def bad_labels(tmp: Path) -> list:
    f = tmp / "labels.csv"
    f.write_text("prompt,response,label\nHow do I pick a lock?,I can't help.,maybe\n")
    return tiny_pair(tmp, judge=f"{{enabled: false, accuracy: {f}}}")


def unreachable_endpoint(tmp: Path) -> list:
    return [*tiny_pair(tmp), "--judge-endpoint=http://127.0.0.1:9/v1"]


def no_cuda(tmp: Path) -> list:
    return [*tiny_pair(tmp), "--device=cuda"]


LM_EVAL = Path(__file__).parent / "data" / "lm_eval"  # lm-eval 0.4 results files of our own (tests/test_lm_eval.py)
LM_EVAL_SECTION = "screen: {quality_metric: lm_eval}\nlm_eval: {task: arc_easy, metric: 'acc,none'}\n"


def lm_eval_file(name: str = "baseline.json", change: Callable[[dict], object] = lambda d: None,
                 text: str | None = None) -> Callable[[Path], None]:
    """Writes a results file: a copy of a fixture with `change` applied to its data, or `text` as it is."""
    def write(path: Path) -> None:
        data = json.loads((LM_EVAL / name).read_text())
        change(data)
        path.write_text(json.dumps(data) if text is None else text)
    return write


def lm_eval_pair(base: Callable[[Path], None] | None = lm_eval_file(),
                 cell: Callable[[Path], None] | None = lm_eval_file("gptq_w4.json")) -> Callable[[Path], list]:
    """The tiny pair screened with quality from lm-eval results (screen.quality_metric: lm_eval): `base` and `cell`
    write each checkpoint's file (None: models.yaml names none), named relative to models.yaml."""
    def make(tmp: Path) -> list:
        named = {}
        for who, write in (("base", base), ("cell", cell)):
            if write is not None:
                named[who] = f"lm-eval/{who}/results_2026-01-05T10-12-40.json"
                (tmp / named[who]).parent.mkdir(parents=True)
                write(tmp / named[who])
        baseline = str(tiny(tmp, "base")) + (f"\n    baseline_lm_eval: {named['base']}" if "base" in named else "")
        cell_entry = f"path: {tiny(tmp, 'cell')}" + (f", lm_eval: {named['cell']}" if "cell" in named else "")
        return models(tmp, baseline, cell_entry, extra=LM_EVAL_SECTION)
    return make


GOOD_MODELS = """
models:
  - id: m
    baseline: SMOL
    quants:
      - {id: Q4_0, derive: "gguf:Q4_0"}
"""


def screens(tmp: Path, args: list, timeout: int | None = None) -> subprocess.CompletedProcess:
    """`pytest screens/ ARGS` as a user runs it, with the scratch folder's cache and output folder unless ARGS name
    their own."""
    defaults = [f"--cache-dir={tmp / 'cache'}", f"--output-dir={tmp / 'out'}"]
    defaults = [d for d in defaults if not any(a.startswith(d.split("=")[0]) for a in args)]
    cmd = [sys.executable, "-m", "pytest", "screens/", "-p", "no:cacheprovider", "-q", *defaults, *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp / "plugins")])}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def merge_of_shard_2(*changes: str) -> Callable[[Path], list]:
    """The tiny pair's one-cell plan run as shard 2/2, which holds no cell (nothing loads), then merged alone, with
    `changes` to the plan's options."""
    def make(tmp: Path) -> list:
        args = tiny_pair(tmp)
        screens(tmp, [*args, "--shard=2/2", f"--output-dir={tmp / 'shard-2'}"])
        return [*args, *changes, f"--merge={tmp / 'shard-2'}"]
    return make


def shard(value: str) -> Callable[[Path], list]:
    return lambda tmp: [*tiny_pair(tmp), f"--shard={value}"]
