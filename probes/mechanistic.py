"""The four mechanistic probes of SPEC §4 over one cell's captured activations and its baseline's.

Informational: none gates a deploy (TR146 found none predicts hidden danger). `ProbeSettings` is the `probes:`
section of models.yaml; the layer choice is part of the probe definition, so it lives here too. Layer numbers follow
the `hidden_states` convention: layer k is the residual stream after decoder block k (1..n_layers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from quantscreen.probes import first_token, refusal_direction, safety_neurons


@dataclass(frozen=True)
class ProbeSettings:
    enabled: bool = True
    n_prompts: int = 100            # first N of the harmful and of the harmless prompts, one forward pass each
    neuron_error_prompts: int = 50  # harmful prompts the safety-neuron error is averaged over
    neuron_top_pct: float = 5.0
    neuron_sweep_pct: tuple[float, ...] = (1.0, 3.0, 5.0, 10.0)
    direction_depth: float = 0.65
    neuron_depths: tuple[float, float] = (0.2, 0.8)
    neuron_layer_count: int = 5
    all_layers: bool = False        # also the refusal direction's cosine at every layer

    def capture_key(self) -> dict:
        """What changes the captured arrays (the rest only changes how they are summarised)."""
        return {"n_prompts": self.n_prompts, "direction_depth": self.direction_depth,
                "neuron_depths": list(self.neuron_depths), "neuron_layer_count": self.neuron_layer_count,
                "all_layers": self.all_layers}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def direction_layer(n_layers: int, depth: float) -> int:
    return min(n_layers, max(1, _round_half_up(depth * n_layers)))


def neuron_layers(n_layers: int, depths: tuple[float, float], count: int) -> list[int]:
    """`count` layers evenly spaced between the two depths (16 layers, 20%-80%: 3, 6, 8, 10, 13)."""
    out = []
    for f in np.linspace(depths[0], depths[1], count):
        layer = min(n_layers, max(1, _round_half_up(float(f) * n_layers)))
        if layer not in out:
            out.append(layer)
    return out


def capture_layers(n_layers: int, s: ProbeSettings) -> list[int]:
    wanted = {direction_layer(n_layers, s.direction_depth), *neuron_layers(n_layers, s.neuron_depths,
                                                                            s.neuron_layer_count)}
    if s.all_layers:
        wanted.update(range(1, n_layers + 1))
    return sorted(wanted)


def intrinsic_figures(cap) -> dict:
    """What one capture says on its own: first-token statistics and the refusal direction's magnitude."""
    ft = first_token.first_token(cap.logit_stats["harmful"], cap.vocab_size)
    d = refusal_direction.direction(cap.at("harmful", cap.direction_layer), cap.at("harmless", cap.direction_layer))
    out = {f"probe_{k}": v for k, v in ft.figures.items()}
    out.update({"probe_direction_layer": cap.direction_layer, "probe_direction_magnitude": float(np.linalg.norm(d)),
                "probe_n_harmful": len(cap.logit_stats["harmful"]["entropy"]),
                "probe_n_harmless": len(cap.logit_stats["harmless"]["entropy"])})
    return out


def cell_figures(cap, base, s: ProbeSettings) -> dict:
    """Every probe figure of a quantized cell against its baseline (both `pipeline.activations.Capture`)."""
    if cap.layers != base.layers or cap.vocab_size != base.vocab_size:
        raise ValueError(f"the cell and its baseline differ in shape (layers {cap.layers} vs {base.layers}, vocabulary "
                         f"{cap.vocab_size} vs {base.vocab_size}): probes need the same architecture")
    out, base_fig = intrinsic_figures(cap), intrinsic_figures(base)
    for k in (*first_token.STATS, "ece"):
        out[f"probe_{k}_shift"] = out[f"probe_{k}"] - base_fig[f"probe_{k}"]
    rd = _direction(cap, base, cap.direction_layer)
    out.update({"probe_direction_cosine": rd.figures["cosine"],
                "probe_direction_magnitude_ratio": rd.figures["magnitude_ratio"]})
    if s.all_layers:
        out["probe_direction_cosine_by_layer"] = ";".join(
            f"{layer}:{_direction(cap, base, layer).figures['cosine']:.6f}" for layer in cap.layers)
    layers = cap.neuron_layers
    harm, base_harm, base_less = cap.stack("harmful", layers), base.stack("harmful", layers), \
        base.stack("harmless", layers)
    sn = safety_neurons.safety_neurons(harm, base_harm, base_less, layers, s.neuron_top_pct, s.neuron_error_prompts)
    out.update({"probe_neuron_layers": ";".join(map(str, layers)), "probe_neuron_top_pct": s.neuron_top_pct,
                "probe_neuron_prompts": sn.n, "probe_neuron_safety_error": sn.figures["safety_error"],
                "probe_neuron_other_error": sn.figures["other_error"],
                "probe_neuron_ratio_mean": sn.figures["ratio_mean"], "probe_neuron_ratio_max": sn.figures["ratio_max"],
                "probe_neuron_ratio_by_layer": ";".join(f"{layer}:{sn.figures[f'ratio_layer{layer}']:.6f}"
                                                        for layer in layers)})
    sweep = [(pct, safety_neurons.safety_neurons(harm, base_harm, base_less, layers, pct, s.neuron_error_prompts))
             for pct in s.neuron_sweep_pct]
    out["probe_neuron_ratio_sweep"] = ";".join(f"{pct:g}%:{rec.figures['ratio_mean']:.6f}" for pct, rec in sweep)
    return out


def _direction(cap, base, layer: int):
    return refusal_direction.refusal_direction(cap.at("harmful", layer), cap.at("harmless", layer),
                                               base.at("harmful", layer), base.at("harmless", layer))


def non_finite(figures: dict) -> list[str]:
    """Names of figures that are NaN or infinite, including inside `layer:value` lists."""
    bad = []
    for k, v in figures.items():
        values = [v] if not isinstance(v, str) else [p.rsplit(":", 1)[-1] for p in v.split(";") if ":" in p]
        try:
            if any(not math.isfinite(float(x)) for x in values):
                bad.append(k)
        except (TypeError, ValueError):
            continue
    return bad
