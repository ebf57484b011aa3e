"""quantscreen: a pytest plugin that screens quantized LLM checkpoints for safety loss before deployment.

The code is imported under this one name; the repository keeps its folders at the top level (screens/, probes/,
fixtures/, engine/, verdicts/, report/, promptsets/) and pyproject.toml maps each to `quantscreen.<folder>`.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

try:
    __version__ = metadata.version("quantscreen")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+source"


def packaged_models_file() -> Path:
    """The shipped models.yaml (the repo's default matrix), used when no --models is given and the rootdir has none."""
    return Path(__file__).with_name("models.yaml")
