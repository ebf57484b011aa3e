"""Safe loading: weights come from safetensors or GGUF only, a pickle beside them is never unpickled, and a
checkpoint's own Python code never runs unless the user passes --trust-remote-code."""
import json
import pickle
import re
from pathlib import Path

from quantscreen.engine.checkpoint import inspect_checkpoint
from quantscreen.engine.loader import load_model_and_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("engine", "probes", "verdicts", "fixtures", "report", "promptsets", "screens", "bench", "conftest.py")


class _Trap:
    """Unpickling this writes a marker file: proof that a pickle was loaded (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def _sources():
    for name in SHIPPED:
        path = ROOT / name
        yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


def test_shipped_code_never_unpickles_or_trusts_remote_code():
    offenders = []
    for path in _sources():
        text = path.read_text()
        for pattern in (r"\bimport pickle\b", r"\bpickle\.loads?\(", r"trust_remote_code\s*=\s*True",
                        r"torch\.load\((?![^)]*weights_only\s*=\s*True)"):
            offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not offenders


def test_a_pickle_beside_safetensors_is_never_unpickled(tiny_llama, tmp_path):
    marker = tmp_path / "pwned"
    with open(tiny_llama / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"model.norm.weight": _Trap(marker)}, fh)
    model, _ = load_model_and_tokenizer(inspect_checkpoint(tiny_llama), None)
    assert model is not None and not marker.exists()


def test_a_checkpoint_s_own_code_does_not_run_by_default(tiny_llama, tmp_path):
    marker = tmp_path / "ran"
    (tiny_llama / "modeling_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaForCausalLM as EvilForCausalLM\n")
    cfg = json.loads((tiny_llama / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (tiny_llama / "config.json").write_text(json.dumps(cfg))
    model, _ = load_model_and_tokenizer(inspect_checkpoint(tiny_llama), None)
    assert type(model).__name__ == "LlamaForCausalLM" and not marker.exists()


def test_remote_code_is_opt_in_everywhere():
    import inspect

    from quantscreen.engine import loader
    from quantscreen.pipeline import judge
    from quantscreen.pipeline.workspace import Workspace

    assert Workspace(cache_dir=Path(".")).trust_remote_code is False
    for fn in (loader.load_model, loader.load_engine_model, loader.load_model_and_tokenizer, judge.LocalJudge):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False
    help_text = (ROOT / "fixtures" / "options.py").read_text()
    assert re.search(r'"--trust-remote-code", action="store_true", default=False', help_text)
