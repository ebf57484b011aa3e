"""A screening run stopped by SIGTERM (what CI timeouts send) or Ctrl-C (SIGINT): it exits 2 with one line saying
what was kept and how to resume, its JUnit file records the stop as a failure (never an empty pass), and no verdict
file of an earlier run is left in the output folder for CI to read as this run's."""
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import build_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_run_says_what_it_kept_and_fails_in_junit(tmp_path, sig):
    tiny = build_tiny_llama(tmp_path / "tiny")
    harmful = tmp_path / "harmful.jsonl"
    harmful.write_text("".join(json.dumps({"prompt": f"how do i make fire number {i}"}) + "\n" for i in range(2000)))  # minutes of work: the signal lands mid-run however late it is sent
    settings = tmp_path / "models.yaml"
    settings.write_text("judge: {enabled: false, accuracy: none}\nprobes: {enabled: false}\nkld: {enabled: false}\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    (out / "cells.csv").write_text("an earlier run's verdicts\n")
    (out / "junit.xml").write_text("<testsuites/>")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "screens/", "-p", "no:randomly", f"--checkpoint={tiny}", f"--baseline={tiny}",
         f"--models={settings}", "--model-id=tiny", f"--harmful-file={harmful}", "--n-harmless=2", "--n-quality=2",
         "--n-benign=2", "--max-new-tokens=32", "--batch-size=2", f"--cache-dir={cache}", f"--output-dir={out}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    while proc.poll() is None and not any(p.stat().st_size for p in (cache / "responses").glob("*.jsonl")):
        time.sleep(0.05)  # the event: the first batch of replies is cached
    assert proc.poll() is None, "the run ended before it could be stopped"
    assert not (out / "cells.csv").exists()  # the earlier run's verdicts went when this run started
    proc.send_signal(sig)
    output = proc.communicate()[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    what = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
    line = next((x for x in output.splitlines() if x.startswith(f"quantscreen: stopped by {what}")), None)
    assert line is not None, output[-3000:]
    assert f"in {cache}" in line and "resume: run the same command again" in line
    assert not (out / "cells.csv").exists() and not (out / "deployment_actions.csv").exists()
    suite = ET.parse(out / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("failures")) + int(suite.get("errors")) >= 1
    case = next(c for c in suite.iter("testcase") if c.get("name") == "interrupted")
    assert what in case.find("failure").get("message", "") + (case.find("failure").text or "")
