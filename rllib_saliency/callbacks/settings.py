"""Validated options of :class:`~rllib_saliency.SaliencyCallbacks`, the same on both RLlib stacks."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.methods import METHODS
from rllib_saliency.methods.base import fill_defaults

TARGET_PATTERN = re.compile(r"action|action_\d+|logp|value|advantage")
RESULT_KEY = "saliency"
TRUST_METRICS = ("completeness", "deletion", "agreement", "randomization")
# Randomisation recomputes every map on a second model (doubling the cost): opt in.
DEFAULT_TRUST_METRICS = ("completeness", "deletion", "agreement")
# maximize_activation() options the callback passes through (obs/init come from the samples).
ACTIVATION_OPTIONS = ("steps", "lr", "l2", "tv", "n_starts")
# Steps of a training episode (``episode_every``) before it is cut: bounds its cost (see README).
DEFAULT_EPISODE_MAX_STEPS = 200
# With ``every=None`` (the default), the share of training's wall time the computations may
# block: an image policy on a CPU learner costs many iterations' time per computation.
DEFAULT_MAX_OVERHEAD = 0.05


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"SaliencyCallbacks.configure: {name!r} must be a positive integer; got {value!r}.")
    return int(value)


def _names(name: str, value: Any, valid: Sequence[str] | None = None) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(
            f"SaliencyCallbacks.configure: {name!r} must be a non-empty list or tuple of strings; "
            f"got {value!r}" + (f". Valid values: {', '.join(valid)}." if valid else ".")
        )
    for item in value:
        if not isinstance(item, str) or (valid is not None and item not in valid):
            raise ValueError(
                f"SaliencyCallbacks.configure: {name!r} has {item!r}; valid values: "
                + (", ".join(valid) if valid else "strings")
                + "."
            )
    return tuple(value)


@dataclass(frozen=True)
class SaliencySettings:
    """Validated options of :class:`SaliencyCallbacks` (see ``SaliencyCallbacks.configure``)."""

    every: int | None = None
    max_overhead: float = DEFAULT_MAX_OVERHEAD
    num_samples: int = 64
    methods: tuple[str, ...] = ("gradient", "integrated_gradients")
    targets: tuple[str, ...] = ("action", "value")
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    policies: tuple[str, ...] | None = None
    feature_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None
    logdir: str | None = None
    max_images: int = 4
    image_every: int = 10
    frame_maps: bool = False
    trust_metrics: tuple[str, ...] = DEFAULT_TRUST_METRICS
    activation_maximization_every: int | None = None
    activation_maximization_options: Mapping[str, Any] = field(default_factory=dict)
    episode_every: int | None = None
    episode_max_steps: int = DEFAULT_EPISODE_MAX_STEPS
    episode_method: str = "gradient"
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        if self.every is not None:
            set_("every", _positive_int("every", self.every))
        overhead = self.max_overhead
        if isinstance(overhead, bool) or not isinstance(overhead, (int, float)) or not 0 < overhead <= 1:
            raise ValueError(
                "SaliencyCallbacks.configure: 'max_overhead' must be a fraction in (0, 1], the share of "
                f"training time the computations may take with every=None; got {overhead!r}."
            )
        set_("max_overhead", float(overhead))
        set_("num_samples", _positive_int("num_samples", self.num_samples))
        set_("image_every", _positive_int("image_every", self.image_every))
        set_("methods", _names("methods", self.methods, list(METHODS)))
        targets = _names("targets", self.targets)
        for target in targets:
            if not TARGET_PATTERN.fullmatch(target):
                raise ValueError(
                    f"SaliencyCallbacks.configure: 'targets' has {target!r}; valid values: 'action', "
                    "'action_K' (K an action index or dimension), 'logp', 'value', 'advantage' (dueling "
                    "Q-networks)."
                )
        set_("targets", targets)
        if not isinstance(self.method_options, Mapping):
            raise ValueError(
                "SaliencyCallbacks.configure: 'method_options' must map a method name to its options, "
                "e.g. {'integrated_gradients': {'steps': 16}}."
            )
        for method, options in self.method_options.items():
            if method not in self.methods:
                raise ValueError(
                    f"SaliencyCallbacks.configure: 'method_options' has {method!r}, which is not in "
                    f"'methods' {self.methods}."
                )
            if not isinstance(options, Mapping):
                raise ValueError(f"SaliencyCallbacks.configure: method_options[{method!r}] must be a dict.")
            fill_defaults(METHODS[method], options)  # unknown option names fail here
        set_("method_options", {m: dict(o) for m, o in self.method_options.items()})
        if self.policies is not None:
            set_("policies", _names("policies", self.policies))
        names = self.feature_names
        if names is not None:
            per_policy = names.values() if isinstance(names, Mapping) else [names]
            for value in per_policy:
                _names("feature_names", value)
            set_("feature_names", dict(names) if isinstance(names, Mapping) else tuple(names))
        if self.logdir is not None and not isinstance(self.logdir, (str, os.PathLike)):
            raise ValueError(
                f"SaliencyCallbacks.configure: 'logdir' must be a path or None; got {self.logdir!r}."
            )
        if isinstance(self.max_images, bool) or not isinstance(self.max_images, int) or self.max_images < 0:
            raise ValueError(
                f"SaliencyCallbacks.configure: 'max_images' must be an integer >= 0; got {self.max_images!r}."
            )
        if self.trust_metrics != ():
            set_("trust_metrics", _names("trust_metrics", self.trust_metrics, TRUST_METRICS))
        if self.activation_maximization_every is not None:
            set_(
                "activation_maximization_every",
                _positive_int("activation_maximization_every", self.activation_maximization_every),
            )
        options = self.activation_maximization_options
        unknown = set(options) - set(ACTIVATION_OPTIONS) if isinstance(options, Mapping) else None
        if unknown is None or unknown:
            raise ValueError(
                "SaliencyCallbacks.configure: 'activation_maximization_options' must be a dict with keys "
                f"from {', '.join(ACTIVATION_OPTIONS)}; got {options!r}."
            )
        set_("activation_maximization_options", dict(options))
        if self.episode_every is not None:
            set_("episode_every", _positive_int("episode_every", self.episode_every))
        set_("episode_max_steps", _positive_int("episode_max_steps", self.episode_max_steps))
        if self.episode_method not in METHODS:
            raise ValueError(
                f"SaliencyCallbacks.configure: 'episode_method' must be one of {', '.join(METHODS)}; "
                f"got {self.episode_method!r}."
            )
        if not isinstance(self.frame_maps, bool):
            raise ValueError(
                f"SaliencyCallbacks.configure: 'frame_maps' must be True or False; got {self.frame_maps!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"SaliencyCallbacks.configure: 'seed' must be an integer; got {self.seed!r}.")


    def episode_method_options(self) -> dict[str, Any]:
        """The episode method's options: those of ``method_options`` if it is also one of ``methods``."""
        return dict(self.method_options.get(self.episode_method, {}))

    def feature_names_for(self, policy_id: str, size: int) -> list[str] | None:
        """The user's feature names for a policy if they fit its observation size (else the defaults)."""
        names = self.feature_names
        if isinstance(names, dict):
            names = names.get(policy_id)
        return list(names) if names is not None and len(names) == size else None


def _as_tuple(value: Any) -> Any:
    """Lists become tuples; strings and other values stay as they are for the checks to name them."""
    return value if isinstance(value, str) or not isinstance(value, Sequence) else tuple(value)


def make_settings(**options: Any) -> SaliencySettings:
    """Settings from ``SaliencyCallbacks.configure``'s keyword arguments (lists accepted for tuples)."""
    for name in ("methods", "targets", "policies", "trust_metrics"):
        if options.get(name) is not None:
            options[name] = _as_tuple(options[name])
    for name in ("method_options", "activation_maximization_options"):
        options[name] = options.get(name) or {}
    return SaliencySettings(**options)
