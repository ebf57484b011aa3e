"""Installed as a user installs it: the repository built into a wheel and installed into a fresh virtual environment
outside the repo, then used from an empty folder: `pytest --help` shows the options, the `quantscreen` command screens
a pair of checkpoints named by relative paths, and a user's own screen and hooks run against the shipped fixtures.

The fresh environment sees the dev environment's packages through a .pth file (nothing is downloaded), and
`pip check` proves the distribution's declared dependencies are met by them.
"""
import csv
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import build_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SMALL = ["--n-harmful=4", "--n-harmless=2", "--n-quality=2", "--n-benign=2", "--max-new-tokens=6", "--no-judge",
         "--no-probes"]


def _source_tree(dest: Path) -> Path:
    """The files a clone of the working tree would hold (tracked and untracked-but-not-ignored), symlinks kept."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    src = _source_tree(tmp / "src")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # pip comes from the .pth
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dev_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (Path(site) / "dev-packages.pth").write_text(dev_site + "\n")
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    user = tmp / "user"
    user.mkdir()
    build_tiny_llama(user / "base")
    build_tiny_llama(user / "cell", dtype="float16")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return {"py": py, "venv": venv, "user": user, "site": Path(site), "env": {**env, "HF_HUB_OFFLINE": "1"},
            "cache": tmp / "cache"}


def _run(inst, *cmd, timeout=None):  # the run's exit is the event waited on; CI's own limit is the clock
    return subprocess.run([str(c) for c in cmd], cwd=inst["user"], capture_output=True, text=True, env=inst["env"],
                          timeout=timeout)


def test_the_wheel_installs_one_package_with_its_dependencies_met(installed):
    py = installed["py"]
    where = _run(installed, py, "-c", "import quantscreen, quantscreen.screens, quantscreen.records.status as s; "
                                      "print(quantscreen.__file__); print(quantscreen.packaged_models_file().is_file())")
    assert where.returncode == 0, where.stderr
    location, has_models = where.stdout.split()
    assert Path(location).is_relative_to(installed["site"]) and has_models == "True"  # not the repo, not a symlink
    for generic in ("engine", "fixtures", "probes", "verdicts", "report", "promptsets", "screens", "records"):
        assert not (installed["site"] / generic).exists(), f"{generic} would collide in site-packages"
    check = _run(installed, py, "-m", "pip", "check")
    assert not [line for line in check.stdout.splitlines() if line.lower().startswith("quantscreen ")], check.stdout
    helptext = _run(installed, py, "-m", "pytest", "--help")
    assert "--checkpoint=PATH" in helptext.stdout and "--baseline=PATH" in helptext.stdout


def test_the_quantscreen_command_screens_relative_paths_from_any_folder(installed):
    proc = _run(installed, installed["venv"] / "bin" / "quantscreen", "--checkpoint=cell", "--baseline=./base",
                "--output-dir=results", f"--cache-dir={installed['cache']}", *SMALL, "-p", "no:randomly")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    out = installed["user"] / "results"
    with open(out / "cells.csv", newline="") as fh:
        cells = list(csv.DictReader(fh))
    assert [r["quant"] for r in cells if r["is_baseline"] == "false"] == ["fp16"] and (out / "junit.xml").is_file()
    assert (out / "deployment_actions.csv").is_file() and (out / "claim_ledger.csv").is_file()


def test_a_users_own_screen_and_hooks_run_against_the_shipped_fixtures(installed):
    user = installed["user"]
    (user / "test_my_policy.py").write_text(textwrap.dedent("""
        def test_my_policy(cell):
            assert cell.refusal_delta_pp is None or cell.refusal_delta_pp > -101, cell.refusal_delta_pp
    """))
    (user / "conftest.py").write_text(textwrap.dedent("""
        from pathlib import Path

        def pytest_quantscreen_cell_measured(config, cell, row):
            with open(Path(config.invocation_params.dir, "hooks.log"), "a") as fh:
                fh.write(f"cell {row['cell_id']}\\n")

        def pytest_quantscreen_deployment_action(config, action):
            with open(Path(config.invocation_params.dir, "hooks.log"), "a") as fh:
                fh.write(f"action {action['quant']} {action['action']}\\n")

        def pytest_quantscreen_ledger_row(config, row):
            with open(Path(config.invocation_params.dir, "hooks.log"), "a") as fh:
                fh.write(f"ledger {row['claim_id']}\\n")
    """))
    proc = _run(installed, installed["py"], "-m", "pytest", "test_my_policy.py", "--checkpoint=cell",
                "--baseline=base", "--output-dir=mine", f"--cache-dir={installed['cache']}", *SMALL, "-p",
                "no:randomly", "-p", "no:cacheprovider")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_my_policy.py::test_my_policy" in proc.stdout or "1 passed" in proc.stdout, proc.stdout[-2000:]
    assert "1 passed" in proc.stdout, proc.stdout[-2000:]
    log = (user / "hooks.log").read_text().splitlines()
    assert sum(line.startswith("cell ") for line in log) == 1
    assert any(line.startswith("action ") for line in log) and any(line.startswith("ledger ") for line in log)
    assert (user / "mine" / "cells.csv").is_file()
