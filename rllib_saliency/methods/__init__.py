"""Attribution methods, one per module, behind one interface (:mod:`.base`)."""

from __future__ import annotations

from rllib_saliency.methods.base import AttributionMethod, BatchContext, MethodResult
from rllib_saliency.methods.gradient import Gradient
from rllib_saliency.methods.gradient_x_input import GradientXInput
from rllib_saliency.methods.integrated_gradients import IntegratedGradients
from rllib_saliency.methods.noise_tunnel import NoiseTunnel
from rllib_saliency.methods.occlusion import Occlusion

METHODS: dict[str, AttributionMethod] = {
    method.name: method
    for method in (
        Gradient(),
        GradientXInput(),
        NoiseTunnel(Gradient(), name="smoothgrad"),
        IntegratedGradients(),
        Occlusion(),
    )
}

__all__ = ["METHODS", "AttributionMethod", "BatchContext", "MethodResult", "get_method"]


def get_method(name: str) -> AttributionMethod:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}.")
    return METHODS[name]
