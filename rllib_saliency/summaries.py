"""Compact summaries of attributions: what env runners send back to the driver.

A worker reduces each attribution (``num_samples`` × observation size) to
per-feature sums of |attribution|, a fixed-size weighted sample of the values
for the histogram, and a count. Summaries from several workers merge exactly
for the means and approximately (by weighted sample) for the histogram.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rllib_saliency.engine import Attribution
from rllib_saliency.structure import Component, component_values, components, is_structured, original_space

HISTOGRAM_SAMPLE = 512


def feature_magnitudes(values: np.ndarray) -> np.ndarray:
    """``(N, F)`` |attribution| per feature: the features of flat observations, or the
    channels (last axis, mean over the other axes) of image-like observations."""
    magnitudes = np.abs(values)
    if magnitudes.ndim == 2:
        return magnitudes
    return magnitudes.reshape(len(values), -1, values.shape[-1]).mean(axis=1)


def default_feature_names(obs_shape: Sequence[int]) -> list[str]:
    if len(obs_shape) == 1:
        return [f"f{i}" for i in range(obs_shape[0])]
    return [f"c{i}" for i in range(obs_shape[-1])]


@dataclass(frozen=True)
class FeatureLayout:
    """How a policy's observations are reported: feature names, and for structured
    observations the components and each feature's top-level key (for share/ scalars)."""

    names: list[str]
    parts: list[Component] | None = None

    @property
    def top_keys(self) -> list[str] | None:
        return None if self.parts is None else [p.top_key for p in self.parts]


def feature_layout(observation_space) -> FeatureLayout:
    original = original_space(observation_space)
    if is_structured(original):
        parts = components(original)
        return FeatureLayout([p.name for p in parts], parts)
    return FeatureLayout(default_feature_names(observation_space.shape))


@dataclass
class AttributionSummary:
    """One worker's summary of one (policy, target, method) attribution."""

    policy_id: str
    target: str
    method: str
    count: int
    sum_abs: np.ndarray  # (F,) sums over samples of per-feature |attribution|
    histogram_values: np.ndarray  # a uniform sample of all attribution values
    histogram_weight: float  # how many values each sampled one stands for
    map_observations: np.ndarray | None = None  # image observations: a few samples ...
    map_values: np.ndarray | None = None  # ... and their attribution maps (float16)
    trust: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric: (numerator, denominator)
    # Images inside Dict/Tuple observations: component name -> (observations, maps).
    component_maps: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.policy_id, self.target, self.method


def summarize(
    attribution: Attribution,
    policy_id: str,
    rng: np.random.Generator,
    parts: Sequence[Component] | None = None,
    max_images: int = 0,
) -> AttributionSummary:
    """Reduce one attribution to what the driver needs. ``parts``: the components of a
    structured (Dict/Tuple/Discrete) observation; ``max_images``: maps kept for images."""
    finite_rows = np.isfinite(attribution.target_values)
    values = attribution.values[finite_rows]
    observations = attribution.observations[finite_rows]
    if parts:
        magnitudes = component_values(values, observations, list(parts), absolute=True)
    else:
        magnitudes = feature_magnitudes(values)
    maps = None, None
    if values.ndim == 4 and max_images:
        maps = observations[:max_images], values[:max_images].astype(np.float16)
    component_maps = {}
    for part in parts or []:
        if part.kind == "block" and len(part.shape) == 3 and max_images:
            rows = slice(None, max_images)
            component_maps[part.name] = (
                observations[rows, part.start : part.stop].reshape(-1, *part.shape),
                values[rows, part.start : part.stop].reshape(-1, *part.shape).astype(np.float16),
            )
    flat = values.reshape(-1)
    sample = flat if len(flat) <= HISTOGRAM_SAMPLE else rng.choice(flat, HISTOGRAM_SAMPLE, replace=False)
    return AttributionSummary(
        policy_id=policy_id,
        target=attribution.target,
        method=attribution.method,
        count=int(len(values)),
        sum_abs=magnitudes.sum(axis=0, dtype=np.float64),
        histogram_values=sample.astype(np.float32),
        histogram_weight=len(flat) / max(len(sample), 1),
        map_observations=maps[0],
        map_values=maps[1],
        component_maps=component_maps,
    )


@dataclass
class MergedSummary:
    """All workers' summaries of one (policy, target, method), as the driver writes them."""

    policy_id: str
    target: str
    method: str
    count: int
    mean_abs: np.ndarray
    histogram_values: np.ndarray
    histogram_weights: np.ndarray
    map_observations: np.ndarray | None = None
    map_values: np.ndarray | None = None
    trust: dict[str, float] = field(default_factory=dict)
    component_maps: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.policy_id, self.target, self.method


def _merge_component_maps(
    group: Sequence[AttributionSummary], max_images: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    merged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for summary in group:
        for name, (obs, maps) in summary.component_maps.items():
            if name in merged:
                obs = np.concatenate([merged[name][0], obs])
                maps = np.concatenate([merged[name][1], maps])
            merged[name] = obs[:max_images], maps[:max_images]
    return {name: (obs, maps.astype(np.float32)) for name, (obs, maps) in merged.items()}


def _merge_trust(group: Sequence[AttributionSummary]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for summary in group:
        for name, (numerator, denominator) in summary.trust.items():
            total = totals.setdefault(name, [0.0, 0.0])
            total[0] += numerator
            total[1] += denominator
    return {name: n / d for name, (n, d) in totals.items() if d > 0}


def merge(summaries: Sequence[AttributionSummary], max_images: int = 0) -> list[MergedSummary]:
    """Merge summaries by (policy, target, method), in first-seen order."""
    groups: dict[tuple[str, str, str], list[AttributionSummary]] = {}
    for summary in summaries:
        groups.setdefault(summary.key, []).append(summary)
    merged = []
    for (policy_id, target, method), group in groups.items():
        count = sum(s.count for s in group)
        if count == 0:
            continue
        with_maps = [s for s in group if s.map_values is not None and len(s.map_values)]
        maps = None, None
        if with_maps and max_images:
            maps = (
                np.concatenate([s.map_observations for s in with_maps])[:max_images],
                np.concatenate([s.map_values for s in with_maps])[:max_images].astype(np.float32),
            )
        merged.append(
            MergedSummary(
                policy_id=policy_id,
                target=target,
                method=method,
                count=count,
                mean_abs=sum(s.sum_abs for s in group) / count,
                histogram_values=np.concatenate([s.histogram_values for s in group]),
                histogram_weights=np.concatenate(
                    [np.full(len(s.histogram_values), s.histogram_weight) for s in group]
                ),
                map_observations=maps[0],
                map_values=maps[1],
                trust=_merge_trust(group),
                component_maps=_merge_component_maps(group, max_images),
            )
        )
    return merged
