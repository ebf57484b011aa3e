"""Device selection (`--device`, xdist worker to GPU mapping) and the gpu marker, checked without a GPU."""
from __future__ import annotations

import pytest

from quantscreen.records.errors import ScreenInputError
from quantscreen.engine.loader import pick_device, xdist_worker_index


@pytest.mark.parametrize("requested, count, worker, expected", [
    ("cpu", 0, None, "cpu"), ("cpu", 4, 3, "cpu"),
    ("auto", 0, None, "cpu"), ("auto", 0, 5, "cpu"),
    ("auto", 1, None, "cuda:0"), ("auto", 2, 0, "cuda:0"), ("auto", 2, 1, "cuda:1"), ("auto", 2, 3, "cuda:1"),
    ("cuda", 3, 4, "cuda:1"), ("cuda", 1, 7, "cuda:0"),
    ("cuda:1", 2, 0, "cuda:1"), ("CUDA:0", 1, 5, "cuda:0"),
])
def test_pick_device(requested, count, worker, expected):
    assert pick_device(requested, count, worker) == expected


def test_workers_spread_over_every_gpu():
    assert {pick_device("auto", 4, w) for w in range(8)} == {f"cuda:{i}" for i in range(4)}


@pytest.mark.parametrize("requested, count, message", [
    ("cuda", 0, "no CUDA device"), ("cuda:0", 0, "no CUDA device"), ("cuda:2", 2, "only 2 CUDA"),
    ("tpu", 1, "not a device"), ("cuda:x", 1, "not a device"),
])
def test_bad_device_is_a_clear_error(requested, count, message):
    with pytest.raises(ScreenInputError, match=message) as exc:
        pick_device(requested, count)
    assert "--device" in str(exc.value)


def test_worker_index(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert xdist_worker_index() == 3
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert xdist_worker_index() is None


def test_gpu_marked_tests_skip_with_a_reason_without_cuda(pytester):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the gpu test would run")
    pytester.makeconftest('pytest_plugins = ["quantscreen.fixtures.options"]')
    pytester.makepyfile("""
        import pytest

        @pytest.mark.gpu
        def test_needs_gpu():
            raise AssertionError("ran without a GPU")

        def test_plain():
            pass
    """)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*gpu: torch * sees no CUDA device*"])


@pytest.mark.gpu
def test_cuda_generation_matches_cpu_on_the_first_tokens(tiny_llama):
    """On a GPU machine: a tiny model's greedy tokens on cuda agree with the CPU's over the first steps."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ids = tok("hello world", return_tensors="pt").input_ids
    cpu = model.generate(ids, max_new_tokens=8, do_sample=False)
    gpu = model.to("cuda").generate(ids.to("cuda"), max_new_tokens=8, do_sample=False).cpu()
    assert torch.equal(cpu[0, :ids.shape[1] + 4], gpu[0, :ids.shape[1] + 4])
