"""Crash safety, end to end: a real screen (SmolLM2 baseline and a derived Q4_0, probes and judge on) is killed with
SIGKILL in the middle of the Q4_0 cell's generation, run again on the same cache and killed again while the judge is
half way through its replies, then run a third time to the end.

Checked against an uninterrupted run on its own cache:
- every response / judgement / activation cache file that existed at either kill is a byte prefix of the same file
  after the last run (finished batches are kept and appended to, never rewritten);
- nothing finished was redone: each cache file holds exactly one verified line per prompt (or per judged pair), the
  resumed run generated only the batches missing at the kill and neither generated nor probed the baseline again, and
  the responses are the ones the uninterrupted run computed;
- the resumed run's tables (cells.csv, deployment_actions.csv, claim_ledger.csv, the other CSVs, summary.html and the
  scatter plot) are byte-identical to the uninterrupted run's. The one cell that legitimately differs is a derived
  checkpoint's `checkpoint_path`: it is where that run's cache put the file (users pass it to --checkpoint, see
  test_integration.py), so it is compared with each run's cache folder replaced by one placeholder; its content is
  pinned by `derive` and `checkpoint_sha256`, which must be equal as they are.
- no run opens a network connection (a small -p plugin wraps socket connects; loopback is allowed), and that without
  HF_HUB_OFFLINE or any other offline switch set by the test.

Serial vs `-n 2` byte-identity of cells.csv, deployment_actions.csv and claim_ledger.csv is compared by
test_integration.py::test_parallel_run_writes_identical_tables, so it is not repeated here.

The figures (wall times, lines cached at the kill, lines generated on resume) are printed (-s) and, when
$QUANTSCREEN_RELIABILITY_OUT names a file, written there as JSON.
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from functools import lru_cache
from pathlib import Path

import pytest

from quantscreen.records.digest import sha256_json
from tests.conftest import SMOL_LABELS, SMOL_Q4_0

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

N_HARMFUL, N_OTHER = 16, 4  # harmful prompts (4 batches of 4); harmless, quality and benign prompts each
MODELS = """
decoding: {{max_new_tokens: 16, batch_size: 4}}
prompts:
  harmful: {{source: advbench, n: {n_harmful}, seed: 3}}
  harmless: {{source: builtin, n: {n_other}}}
  quality: {{source: builtin, n: {n_other}}}
  benign: {{n: {n_other}}}
probes: {{enabled: true, n_prompts: 4}}
""" + SMOL_Q4_0
STORES = ("responses", "judgements", "activations")
COMPARED = ("cells.csv", "deployment_actions.csv", "claim_ledger.csv", "refusal_flips.csv", "instrument_accuracy.csv",
            "probe_statistics.csv", "sources.csv", "summary.html", "regime_scatter.png")

# Loaded into the screen with -p: every socket connect is recorded; anything but loopback or a unix socket is refused.
NETGUARD = '''
import ipaddress, json, os, socket, traceback

LOG = os.environ["QS_NETGUARD_LOG"]
_connect, _connect_ex, _create = socket.socket.connect, socket.socket.connect_ex, socket.create_connection


def _local(family, address):
    if family == getattr(socket, "AF_UNIX", object()) or isinstance(address, (str, bytes)):
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(family, address, how):
    ok = _local(family, address)
    with open(LOG, "a") as fh:
        fh.write(json.dumps({"how": how, "address": repr(address), "allowed": ok, "pid": os.getpid(),
                             "where": "".join(traceback.format_stack(limit=14)[:-2])}) + "\\n")
    if not ok:
        raise OSError(f"netguard: connection to {address!r} refused (the screen must not use the network)")


def connect(self, address):
    _check(self.family, address, "socket.connect")
    return _connect(self, address)


def connect_ex(self, address):
    _check(self.family, address, "socket.connect_ex")
    return _connect_ex(self, address)


def create_connection(address, *args, **kwargs):
    _check(socket.AF_INET, address, "socket.create_connection")
    return _create(address, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.create_connection = connect, connect_ex, create_connection


def pytest_configure(config):
    open(LOG + ".active", "w").write(str(os.getpid()))
'''


def screen_cmd(tmp: Path, cache: str, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "screens/", "-p", "no:randomly", "-p", "no:cacheprovider",
            "-p", "netguard", f"--models={tmp / 'models.yaml'}", f"--cache-dir={tmp / cache}",
            f"--output-dir={tmp / out}", *extra]


def cache_files(cache: Path) -> dict[str, bytes]:
    """Every store's JSONL and key files, by path relative to the cache folder."""
    return {str(p.relative_to(cache)): p.read_bytes() for store in STORES if (cache / store).is_dir()
            for p in sorted((cache / store).iterdir()) if p.name.endswith((".jsonl", ".key.json"))}


def verified(data: bytes) -> tuple[list[dict], int]:
    """(lines whose checksum verifies, damaged lines): what engine.cache.JsonlStore would use and ignore."""
    good, damaged = [], 0
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if rec.pop("sha256") != sha256_json(rec):
                raise ValueError("checksum")
            good.append(rec)
        except (ValueError, KeyError, TypeError, AttributeError):
            damaged += 1
    return good, damaged


def entry_id(store: str, rec: dict):
    return rec["digest"] if store == "judgements" else rec["i"]


@lru_cache(maxsize=1)
def harmful_digest() -> str:
    from quantscreen import promptsets

    return promptsets.advbench(N_HARMFUL, 3).digest


def n_prompts(cache: Path, name: str) -> int:
    """How many prompts a response file answers, from the prompt set digest in its key file."""
    key = json.loads((cache / name).with_name(Path(name).name.replace(".jsonl", ".key.json")).read_text())
    return N_HARMFUL if key["prompt_set_sha256"] == harmful_digest() else N_OTHER


def check_complete(cache: Path, files: dict[str, bytes], what: str) -> None:
    """Every response file holds exactly one verified line per prompt."""
    for name, data in files.items():
        if name.startswith("responses/") and name.endswith(".jsonl"):
            ids = [r["i"] for r in verified(data)[0]]
            assert sorted(ids) == list(range(n_prompts(cache, name))), f"{what}: {name} holds prompts {sorted(ids)}"


def newlines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def mid_generation(cache: Path):
    """The Q4_0 cell's partial harmful response file and its lines once half its batches are cached (else None).
    Activations exist only once the baseline is measured (responses, then probes), so a partial harmful response file
    after that is the cell's."""
    acts = cache / "activations"
    if not (acts.is_dir() and any(newlines(p) for p in acts.glob("*.jsonl"))):
        return None
    for p in sorted((cache / "responses").glob("*.jsonl")):
        n = newlines(p)
        key = p.with_name(p.name.replace(".jsonl", ".key.json"))
        if N_HARMFUL // 2 <= n < N_HARMFUL and key.exists() and "canary" not in json.loads(key.read_text()) \
                and n_prompts(cache, f"responses/{p.name}") == N_HARMFUL:  # the cell's, not the baseline's canary
            return p.name, n
    return None


def store_lines(files: dict[str, bytes], store: str) -> int:
    """The intact lines of a store's JSONL files."""
    return sum(len(verified(d)[0]) for n, d in files.items() if n.startswith(store + "/") and n.endswith(".jsonl"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    (tmp / "labels.csv").write_text(SMOL_LABELS)
    models = MODELS.format(n_harmful=N_HARMFUL, n_other=N_OTHER, labels=tmp / "labels.csv")
    (tmp / "models.yaml").write_text(textwrap.dedent(models))
    (tmp / "netguard.py").write_text(NETGUARD)
    env = {**os.environ, "QS_NETGUARD_LOG": str(tmp / "net.log"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")]))}
    figures: dict = {}

    # A: uninterrupted. Every run has the network guard.
    t0 = time.monotonic()
    a = subprocess.run(screen_cmd(tmp, "cacheA", "outA"), cwd=ROOT, capture_output=True, text=True,
                       env=env)
    figures["run_a_s"] = round(time.monotonic() - t0, 1)
    assert a.returncode in (0, 1), a.stdout[-3000:] + a.stderr[-3000:]
    final_a = cache_files(tmp / "cacheA")
    check_complete(tmp / "cacheA", final_a, "uninterrupted run")
    expected = {name: len(verified(data)[0]) for name, data in final_a.items() if name.endswith(".jsonl")}

    # B: killed in the middle of the Q4_0 cell's harmful generation (mid_generation).
    # B': the same command on the same cache, killed again while the judge is half way through its replies.
    judged = sum(n for name, n in expected.items() if name.startswith("judgements/"))

    def mid_judging(cache: Path):
        n = sum(newlines(p) for p in (cache / "judgements").glob("*.jsonl")) if (cache / "judgements").is_dir() else 0
        return n if 0 < n < judged else None

    partial, figures["run_b_until_kill_s"], log_b = kill_when(tmp, env, mid_generation, "runB.log")
    at_kill = cache_files(tmp / "cacheB")
    _, figures["run_b2_until_kill_s"], log_b2 = kill_when(tmp, env, mid_judging, "runB2.log")
    at_kill2 = cache_files(tmp / "cacheB")

    # B'': the same command once more, left to finish.
    t0 = time.monotonic()
    b3 = subprocess.run(screen_cmd(tmp, "cacheB", "outB"), cwd=ROOT, capture_output=True, text=True, env=env)
    figures["run_b3_s"] = round(time.monotonic() - t0, 1)
    assert b3.returncode == a.returncode, b3.stdout[-3000:] + b3.stderr[-3000:]
    final_b = cache_files(tmp / "cacheB")

    figures.update({
        "response_lines_total": store_lines(final_a, "responses"),
        "response_lines_cached_at_kill": store_lines(at_kill, "responses"),
        "response_lines_generated_on_resume": store_lines(final_b, "responses") - store_lines(at_kill, "responses"),
        "judgement_lines_total": judged, "judgement_lines_cached_at_second_kill": store_lines(at_kill2, "judgements"),
        "killed_file": f"responses/{partial[0]}", "killed_file_lines_at_kill": partial[1],
        "killed_file_lines_total": N_HARMFUL,
        "activation_lines_cached_at_kill": store_lines(at_kill, "activations"),
        "judgement_lines_cached_at_kill": store_lines(at_kill, "judgements"),
        "torn_lines_at_kill": sum(verified(d)[1] for n, d in at_kill.items() if n.endswith(".jsonl")),
        "torn_lines_at_second_kill": sum(verified(d)[1] for n, d in at_kill2.items() if n.endswith(".jsonl")),
        "exit_code": a.returncode,
        "socket_connects": newlines(tmp / "net.log"),  # attempted by the three runs (loopback allowed, rest refused)
    })
    print("\ncrash-safety figures: " + json.dumps(figures, indent=1))
    if os.environ.get("QUANTSCREEN_RELIABILITY_OUT"):
        Path(os.environ["QUANTSCREEN_RELIABILITY_OUT"]).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return {"tmp": tmp, "a": a, "b2_log": log_b2, "b3": b3, "final_a": final_a, "kills": [at_kill, at_kill2],
            "final_b": final_b, "expected": expected, "partial": partial, "figures": figures}


def kill_when(tmp: Path, env: dict, ready, log_name: str):
    """Start the screen on cache B and SIGKILL its process group as soon as `ready(cache)` returns something.

    Returns (what `ready` returned, seconds until the kill, the run's output)."""
    log = open(tmp / log_name, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen(screen_cmd(tmp, "cacheB", "outB"), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    found = None
    try:
        while proc.poll() is None and found is None:  # events: the file reached its state, or the run ended
            found = ready(tmp / "cacheB")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    output = (tmp / log_name).read_text()
    assert found is not None and proc.returncode == -signal.SIGKILL, (
        f"{log_name}: the run was not killed where intended (exit {proc.returncode}):\n{output[-3000:]}")
    return found, round(time.monotonic() - t0, 1), output


def test_kill_keeps_every_finished_batch(runs):
    """Each store file at the kill is a byte prefix of itself after the resume: kept, appended to, never rewritten.
    (A torn last line would stay in place too: the next append starts with a newline that isolates it.)"""
    first, second = runs["kills"]
    assert any(n.startswith("responses/") for n in first) and any(n.startswith("activations/") for n in first)
    assert any(n.startswith("judgements/") for n in second)
    for name, before in [*first.items(), *second.items()]:
        final_b = runs["final_b"]
        assert name in final_b, f"{name} disappeared on resume"
        after = final_b[name]
        if name.endswith(".key.json"):
            assert after == before, name
        else:
            assert after.startswith(before), f"{name} was rewritten, not appended to"
            if before and not before.endswith(b"\n"):  # torn by the kill: the resume isolated it
                assert after[len(before):].startswith(b"\n"), name


def test_resume_redoes_nothing_finished(runs):
    at_kill, final_b, final_a, expected = runs["kills"][0], runs["final_b"], runs["final_a"], runs["expected"]
    assert sorted(final_b) == sorted(final_a)  # cache keys do not depend on where the cache is
    for name, data in final_b.items():
        if not name.endswith(".jsonl"):
            continue
        store = name.split("/")[0]
        good, _ = verified(data)
        ids = [entry_id(store, r) for r in good]
        assert len(ids) == len(set(ids)), f"{name}: some entry was computed twice"
        assert len(ids) == expected[name], f"{name}: {len(ids)} verified entries; uninterrupted: {expected[name]}"
        if store == "responses":  # exactly what the uninterrupted run generated, prompt by prompt
            assert {r["i"]: r for r in good} == {r["i"]: r for r in verified(final_a[name])[0]}, name
    check_complete(runs["tmp"] / "cacheB", final_b, "resumed run")
    out = runs["b2_log"]
    # The baseline was fully measured before the first kill: the resume neither generates nor probes it again...
    assert "generating smol-baseline" not in out and "probing smol-baseline" not in out, out[-3000:]
    # ... and generates only the Q4_0 harmful prompts missing at the kill, plus the roles not started.
    name, n_at_kill = runs["partial"]
    assert re.search(rf"generating smol-Q4_0 harmful: {N_HARMFUL - n_at_kill} prompts", out), out[-3000:]
    assert len(verified(at_kill[f"responses/{name}"])[0]) == n_at_kill
    # Every response was cached before the second kill (the judge runs last): the last run generates nothing.
    assert "generating" not in runs["b3"].stdout, runs["b3"].stdout[-3000:]


def test_resumed_tables_equal_the_uninterrupted_run(runs):
    tmp = runs["tmp"]
    for name in COMPARED:
        a, b = (tmp / "outA" / name).read_bytes(), (tmp / "outB" / name).read_bytes()
        if name == "cells.csv":  # a derived checkpoint's path lies under each run's own cache
            a = a.replace(str(tmp / "cacheA").encode(), b"<cache>")
            b = b.replace(str(tmp / "cacheB").encode(), b"<cache>")
            assert b"<cache>/derived/" in a
        assert a == b, name
    for sub in sorted((tmp / "outA" / "matrix").iterdir()):
        assert sub.read_bytes() == (tmp / "outB" / "matrix" / sub.name).read_bytes(), f"matrix/{sub.name}"


def test_screens_open_no_network_connection(runs):
    log = runs["tmp"] / "net.log"
    assert (runs["tmp"] / "net.log.active").exists(), "the network guard plugin was not loaded"
    attempts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    refused = [a for a in attempts if not a["allowed"]]
    assert not refused, "\n\n".join(f"{a['how']} {a['address']} (pid {a['pid']}) from:\n{a['where']}" for a in refused)
