"""SaliencyCallbacks: sample observations during training, explain them where they were
sampled, and log compact summaries to TensorBoard from the driver.

Design (one computation every ``every`` training iterations):

1. ``on_sample_end`` (on each env runner that samples: the remote ones, or the
   local one when there are none) adds the batch's observations and actions to a
   per-policy reservoir of ``num_samples`` rows. Nothing else happens while sampling.
2. ``on_train_result`` (on the driver, after the learner's weights were pushed to
   the env runners) asks every healthy env runner, in parallel, to run
   ``explain()`` on its reservoir with its own copy of the policy and to send
   back per-feature sums, a 512-value histogram sample and a count per
   (policy, target, method). Failures come back as data, never as exceptions
   (an exception inside ``foreach_env_runner`` takes the runner down).
3. The driver merges the summaries, checks each runner's weights fingerprint
   against the learner's, and alone writes TensorBoard events (one writer,
   created once) and adds the scalars to the training result.

Nothing here may break training: every stage runs under an error guard that logs
the first traceback of each kind, then counts.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import re
import time
import traceback
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ray.rllib.algorithms.callbacks import DefaultCallbacks

from rllib_saliency.backends import check_supported, policy_mode
from rllib_saliency.engine import explain
from rllib_saliency.history import HISTORY_FILE, EvolutionHistory
from rllib_saliency.methods import METHODS
from rllib_saliency.methods.base import fill_defaults
from rllib_saliency.recurrent import per_step_states
from rllib_saliency.sampler import ReservoirSampler
from rllib_saliency.summaries import (
    AttributionSummary,
    MergedSummary,
    feature_layout,
    merge,
    summarize,
)
from rllib_saliency.targets import action_targets
from rllib_saliency.trust import deletion_auc, randomization_rank_corr, rank_agreement
from rllib_saliency.trust.completeness import completeness_sums

logger = logging.getLogger("rllib_saliency")

TARGET_PATTERN = re.compile(r"action|action_\d+|logp|value")
RESULT_KEY = "saliency"
TRUST_METRICS = ("completeness", "deletion", "agreement", "randomization")
# Randomisation recomputes every map on a second model (doubling the cost): opt in.
DEFAULT_TRUST_METRICS = ("completeness", "deletion", "agreement")
# maximize_activation() options the callback passes through (obs/init come from the samples).
ACTIVATION_OPTIONS = ("steps", "lr", "l2", "tv", "n_starts")


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

    every: int = 1
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
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("every", _positive_int("every", self.every))
        set_("num_samples", _positive_int("num_samples", self.num_samples))
        set_("image_every", _positive_int("image_every", self.image_every))
        set_("methods", _names("methods", self.methods, list(METHODS)))
        targets = _names("targets", self.targets)
        for target in targets:
            if not TARGET_PATTERN.fullmatch(target):
                raise ValueError(
                    f"SaliencyCallbacks.configure: 'targets' has {target!r}; valid values: 'action', "
                    "'action_K' (K an action index or dimension), 'logp', 'value'."
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
        if not isinstance(self.frame_maps, bool):
            raise ValueError(
                f"SaliencyCallbacks.configure: 'frame_maps' must be True or False; got {self.frame_maps!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"SaliencyCallbacks.configure: 'seed' must be an integer; got {self.seed!r}.")


class ErrorLog:
    """Logs the first traceback of each (stage, error type), then counts; never raises."""

    REPEAT_EVERY = 100

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, stage: str, kind: str, details: str, times: int = 1) -> None:
        key = (stage, kind)
        before = self.counts.get(key, 0)
        self.counts[key] = count = before + times
        if before == 0:
            logger.error("rllib_saliency: %s failed; training goes on without it.\n%s", stage, details)
        elif count // self.REPEAT_EVERY > before // self.REPEAT_EVERY:
            logger.error("rllib_saliency: %s has failed %d times (%s); training goes on.", stage, count, kind)

    def exception(self, stage: str, error: BaseException) -> None:
        self.record(stage, type(error).__name__, "".join(traceback.format_exception(error)))


class PendingErrors:
    """Env-runner side: errors kept as data until the driver's next request, which logs them.

    (An env runner's own log is easy to miss, and an exception raised on it would
    take it down.)"""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], list] = {}

    def add(self, stage: str, kind: str, details: str) -> None:
        entry = self._pending.setdefault((stage, kind), [0, details])
        entry[0] += 1

    def exception(self, stage: str, error: BaseException) -> None:
        self.add(stage, type(error).__name__, "".join(traceback.format_exception(error)))

    def take(self) -> list[tuple[str, str, str, int]]:
        taken = [(stage, kind, details, count) for (stage, kind), (count, details) in self._pending.items()]
        self._pending.clear()
        return taken


def _all_action_targets(action_space: Any) -> list[str]:
    """One target per action: every logit of a Discrete space, every Box dimension or
    MultiDiscrete sub-action."""
    import gymnasium as gym

    if isinstance(action_space, gym.spaces.Discrete):
        return [f"action_{k}" for k in range(int(action_space.n))]
    return action_targets(action_space)


def _mean_sums(values: np.ndarray) -> tuple[float, float]:
    """(sum, count) of the finite values: a mean that merges exactly across workers."""
    finite = np.isfinite(values)
    return float(values[finite].sum()), float(finite.sum())


def _weights_fingerprint(policy: Any) -> float:
    weights = policy.get_weights()
    arrays = weights.values() if isinstance(weights, dict) else weights
    return float(sum(np.asarray(w, np.float64).sum() for w in arrays))


def _saliency_callbacks(callbacks: Any) -> SaliencyCallbacks | None:
    """Our instance inside a worker's callbacks (possibly a make_multi_callbacks wrapper)."""
    if isinstance(callbacks, SaliencyCallbacks):
        return callbacks
    for inner in getattr(callbacks, "_callback_list", []):
        if isinstance(inner, SaliencyCallbacks):
            return inner
    return None


def default_logdir(algorithm: Any) -> str:
    """The Tune trial dir (where Tune's own TensorBoard events go) or the algorithm's log dir.

    Under Tune, ``algorithm.logdir`` is the trial's *working* dir, which Tune only
    copies to the trial dir with ``SyncConfig(sync_artifacts=True)``. With local
    storage we write straight into the trial dir; with remote storage (e.g. S3)
    into the working dir, which needs ``sync_artifacts=True`` to be uploaded.
    """
    storage = getattr(algorithm, "_storage", None)  # Tune's StorageContext; None outside Tune
    if storage is not None:
        import pyarrow.fs

        if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return storage.trial_fs_path
        return storage.trial_working_directory
    return algorithm.logdir


def compute_on_env_runner(worker: Any) -> dict[str, Any]:
    """Runs on an env runner: explain its reservoir. Returns errors as data, never raises."""
    try:
        callbacks = _saliency_callbacks(worker.callbacks)
        if callbacks is None:
            return {"summaries": [], "errors": [("compute", "NoCallbacks", "SaliencyCallbacks not found", 1)]}
        return callbacks.compute_summaries(worker)
    except BaseException as error:  # noqa: BLE001 - must not take the env runner down
        return {"summaries": [], "errors": [("compute", type(error).__name__, traceback.format_exc(), 1)]}


class SaliencyCallbacks(DefaultCallbacks):
    """Logs input attributions of every TF policy to TensorBoard during training.

    ``config.callbacks(SaliencyCallbacks)`` for defaults, or
    ``config.callbacks(SaliencyCallbacks.configure(every=5, ...))``.
    """

    def __init__(self, settings: SaliencySettings | None = None) -> None:
        super().__init__()
        self.settings = settings or SaliencySettings()
        self.errors = ErrorLog()  # driver side
        self.worker_errors = PendingErrors()  # env-runner side
        # Env-runner side.
        self._samplers: dict[str, ReservoirSampler] = {}
        self._policy_choice: dict[str, bool] = {}
        self._rng = np.random.default_rng(self.settings.seed)
        self.last_explained: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.last_states: dict[str, tuple[np.ndarray, ...]] = {}
        # Driver side.
        self._writer: Any = None
        self._config_written = False
        self._history = EvolutionHistory()
        self._layouts: dict[str, Any] = {}
        self._skipped: dict[str, int] = {}

    @classmethod
    def configure(
        cls,
        *,
        every: int = 1,
        num_samples: int = 64,
        methods: Sequence[str] = ("gradient", "integrated_gradients"),
        targets: Sequence[str] = ("action", "value"),
        method_options: Mapping[str, Mapping[str, Any]] | None = None,
        policies: Sequence[str] | None = None,
        feature_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        logdir: str | None = None,
        max_images: int = 4,
        image_every: int = 10,
        frame_maps: bool = False,
        trust_metrics: Sequence[str] = DEFAULT_TRUST_METRICS,
        activation_maximization_every: int | None = None,
        activation_maximization_options: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> functools.partial:
        """Validate options now and return a callable for ``AlgorithmConfig.callbacks``.

        Args:
            every: training iterations between saliency computations.
            num_samples: observations per policy per env runner per computation
                (a uniform reservoir over all batches since the last one).
            methods: attribution methods (see ``rllib_saliency.METHODS``).
            targets: ``"action"`` (for Box action spaces: every dimension,
                logged as ``action_0``, ``action_1``, ...), ``"action_K"``,
                ``"logp"`` (of the actions taken), ``"value"``.
            method_options: per-method keyword options, e.g.
                ``{"integrated_gradients": {"steps": 16}}``.
            policies: policy ids to explain; default every TF policy.
            feature_names: names for the observation features, one list for
                every policy or a dict ``{policy_id: [...]}``.
            logdir: where events go; default the algorithm's log dir (the trial
                dir under Tune).
            max_images: most samples shown in image summaries of image observations.
            image_every: write the importance and evolution images every this
                many computations (rendering costs ~0.1 s per image).
            frame_maps: for image observations, also show each stacked frame
                (channel) with its own map in the ``importance`` image.
            trust_metrics: which of ``completeness``, ``deletion``, ``agreement``,
                ``randomization`` to log with every map (``()`` for none).
            activation_maximization_every: every this many saliency computations,
                also run :func:`~rllib_saliency.maximize_activation` for every
                action of every policy, from sampled observations (default off).
            activation_maximization_options: its ``steps``, ``lr``, ``l2``, ``tv``,
                ``n_starts``.
            seed: seeds sampling and SmoothGrad noise.
        """
        settings = SaliencySettings(
            every=every,
            num_samples=num_samples,
            methods=tuple(methods) if not isinstance(methods, str) else methods,
            targets=tuple(targets) if not isinstance(targets, str) else targets,
            method_options=method_options or {},
            policies=None
            if policies is None
            else (tuple(policies) if not isinstance(policies, str) else policies),
            feature_names=feature_names,
            logdir=logdir,
            max_images=max_images,
            image_every=image_every,
            frame_maps=frame_maps,
            trust_metrics=tuple(trust_metrics) if not isinstance(trust_metrics, str) else trust_metrics,
            activation_maximization_every=activation_maximization_every,
            activation_maximization_options=activation_maximization_options or {},
            seed=seed,
        )
        return functools.partial(cls, settings=settings)

    # ----- env runner side -------------------------------------------------------------

    def _wants(self, worker: Any, policy_id: str) -> bool:
        if policy_id not in self._policy_choice:
            policy = worker.policy_map[policy_id]
            wanted = self.settings.policies is None or policy_id in self.settings.policies
            if wanted and policy_mode(policy) is None:
                logger.warning(
                    "rllib_saliency: policy %r is not an old-API-stack TensorFlow policy (%s); skipped.",
                    policy_id,
                    type(policy).__name__,
                )
                wanted = False
            if wanted:
                try:
                    check_supported(policy)
                except TypeError as error:  # a TF policy whose model the engine cannot handle
                    self.worker_errors.exception(f"policy {policy_id}", error)
                    wanted = False
            self._policy_choice[policy_id] = wanted
        return self._policy_choice[policy_id]

    def on_sample_end(self, *, worker: Any = None, samples: Any = None, **kwargs: Any) -> None:
        try:
            for policy_id, batch in samples.as_multi_agent().policy_batches.items():
                if not self._wants(worker, policy_id):
                    continue
                if policy_id not in self._samplers:
                    # Reproducible per (seed, policy, env runner), different across runners.
                    seed = [
                        self.settings.seed,
                        zlib.crc32(policy_id.encode()),
                        getattr(worker, "worker_index", 0),
                    ]
                    self._samplers[policy_id] = ReservoirSampler(self.settings.num_samples, seed)
                extras = per_step_states(batch, worker.policy_map[policy_id])
                self._samplers[policy_id].add(batch["obs"], batch["actions"], extras)
        except Exception as error:  # noqa: BLE001 - sampling must go on
            self.worker_errors.exception("sampling", error)

    def _targets_for(self, policy: Any) -> list[str]:
        targets = []
        for target in self.settings.targets:
            targets += action_targets(policy.action_space) if target == "action" else [target]
        return targets

    def compute_summaries(self, worker: Any) -> dict[str, Any]:
        """Explain this worker's reservoirs with its own policies; compact summaries only."""
        summaries: list[AttributionSummary] = []
        errors: list[tuple[str, str, str, int]] = self.worker_errors.take()
        fingerprints: dict[str, float] = {}
        skipped: dict[str, int] = {}
        for policy_id, sampler in self._samplers.items():
            skipped[policy_id] = sampler.skipped_nonfinite
            sample = sampler.drain()
            if sample is None:
                continue
            obs, actions, states = sample
            self.last_explained[policy_id] = (obs, actions)
            self.last_states[policy_id] = states
            try:
                policy = worker.policy_map[policy_id]
                fingerprints[policy_id] = _weights_fingerprint(policy)
                targets = self._targets_for(policy)
                layout = feature_layout(policy.observation_space)
            except Exception:  # noqa: BLE001
                errors.append((f"policy {policy_id}", "PolicyError", traceback.format_exc(), 1))
                continue
            for target in targets:
                attributions = {}
                for method in self.settings.methods:
                    stage = f"explain {policy_id}/{target}/{method}"
                    try:
                        attribution = explain(
                            policy,
                            obs,
                            method,
                            target,
                            actions=actions if target == "logp" else None,
                            state=states or None,
                            **self._method_options(method),
                        )
                        summary = summarize(
                            attribution, policy_id, self._rng, layout.parts, self.settings.max_images
                        )
                        summary.trust = self._trust_sums(policy, attribution)
                        summaries.append(summary)
                        attributions[method] = (attribution, summary)
                    except Exception as error:  # noqa: BLE001 - one bad pair must not stop the rest
                        errors.append((stage, type(error).__name__, traceback.format_exc(), 1))
                if "agreement" in self.settings.trust_metrics:
                    for (a, (first, summary)), (b, (second, _)) in itertools.combinations(
                        attributions.items(), 2
                    ):
                        summary.trust[f"agreement/{a}__{b}"] = _mean_sums(rank_agreement(first, second))
        report = {"summaries": summaries, "errors": errors, "fingerprints": fingerprints, "skipped": skipped}
        if self.settings.activation_maximization_every:
            # Starting points for activation maximization on the driver.
            rows = int(self.settings.activation_maximization_options.get("n_starts", 8))
            report["observations"] = {pid: obs[:rows] for pid, (obs, _) in self.last_explained.items()}
        return report

    def _trust_sums(self, policy: Any, attribution: Any) -> dict[str, tuple[float, float]]:
        """Trust metrics of one attribution as (numerator, denominator) sums, which merge
        exactly across env runners; a failing metric is reported, the others still run."""
        metrics = self.settings.trust_metrics
        sums: dict[str, tuple[float, float]] = {}
        if "completeness" in metrics and attribution.delta is not None:
            sums["completeness_error"] = completeness_sums(attribution)
        if "deletion" in metrics:
            by_map, by_chance = deletion_auc(policy, attribution, seed=self.settings.seed)
            sums["deletion_auc"] = _mean_sums(by_map)
            sums["deletion_auc_random"] = _mean_sums(by_chance)
        if "randomization" in metrics:
            corr = randomization_rank_corr(policy, attribution, seed=self.settings.seed)
            sums["randomization_rank_corr"] = _mean_sums(corr)
        return sums

    def _method_options(self, method: str) -> dict[str, Any]:
        options = dict(self.settings.method_options.get(method, {}))
        if method == "smoothgrad":
            options.setdefault("seed", self.settings.seed)
        return options

    # ----- driver side -----------------------------------------------------------------

    def on_train_result(self, *, algorithm: Any = None, result: dict | None = None, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            iteration = int(result["training_iteration"])
            if iteration % self.settings.every:
                return
            # The step Tune's TensorBoard logger uses for this result, so our
            # events line up with RLlib's curves.
            step = int(result.get("timesteps_total") or iteration)
            reports = self._collect(algorithm)
            merged = self._merge_reports(algorithm, reports)
            names = {s.key: self._names_for(algorithm, s) for s in merged}
            shares = {s.key: self._shares(algorithm, s) for s in merged}
            result[RESULT_KEY] = self._result_scalars(merged, names)
            for summary in merged:
                for tag, value in self._trust_tags(summary).items():
                    result[RESULT_KEY][tag] = np.longdouble(value)
            for policy_id, count in self._skipped.items():
                # Rows with NaN/inf observations the reservoirs left out so far (all runners).
                result[RESULT_KEY][f"{policy_id}/nonfinite_rows_skipped"] = count
            for (policy_id, target, method), by_key in shares.items():
                for key, share in by_key.items():
                    result[RESULT_KEY][f"{policy_id}/{target}/{method}/share/{key}"] = np.longdouble(share)
            self._write(algorithm, merged, names, shares, step)
            every = self.settings.activation_maximization_every
            if every and self._computations_done() % every == 1 % every:
                self._maximize_activations(algorithm, reports, result, step)
            # What this computation cost the training loop (driver wall time).
            result[RESULT_KEY]["seconds"] = time.perf_counter() - started
        except Exception as error:  # noqa: BLE001 - a logging failure never kills training
            self.errors.exception("saliency computation", error)
        if self.errors.total and isinstance(result, dict):
            result.setdefault(RESULT_KEY, {})["errors"] = self.errors.total

    def _collect(self, algorithm: Any) -> list[dict[str, Any]]:
        group = algorithm.env_runner_group
        if group.num_remote_env_runners() > 0:
            return group.foreach_env_runner(compute_on_env_runner, local_env_runner=False, healthy_only=True)
        return [compute_on_env_runner(algorithm.env_runner)]

    def _merge_reports(self, algorithm: Any, reports: list[dict[str, Any]]) -> list[MergedSummary]:
        summaries = []
        self._skipped = {}
        for report in reports:
            for policy_id, count in report.get("skipped", {}).items():
                self._skipped[policy_id] = self._skipped.get(policy_id, 0) + count
            for stage, kind, details, times in report.get("errors", []):
                self.errors.record(stage, kind, details, times)
            for policy_id, fingerprint in report.get("fingerprints", {}).items():
                self._check_weights(algorithm, policy_id, fingerprint)
            summaries += report.get("summaries", [])
        return merge(summaries, self.settings.max_images)

    def _check_weights(self, algorithm: Any, policy_id: str, fingerprint: float) -> None:
        learner = _weights_fingerprint(algorithm.get_policy(policy_id))
        if not math.isclose(fingerprint, learner, rel_tol=1e-6, abs_tol=1e-6):
            self.errors.record(
                "weight sync check",
                "StaleWeights",
                f"an env runner explained policy {policy_id!r} with weights that differ from the "
                f"learner's (fingerprint {fingerprint} vs {learner}); its saliency lags one update.",
            )

    def _feature_names(self, policy_id: str, size: int, observation_space: Any) -> list[str]:
        names = self.settings.feature_names
        if isinstance(names, Mapping):
            names = names.get(policy_id)
        if names is not None:
            if len(names) == size:
                return list(names)
            self.errors.record(
                "feature names",
                "LengthMismatch",
                f"feature_names for policy {policy_id!r} has {len(names)} names but the policy's "
                f"observations have {size} features; using the default names.",
            )
        return self._layout_of(policy_id, observation_space).names

    def _layout_of(self, policy_id: str, observation_space: Any) -> Any:
        """A policy's feature layout, worked out once per policy (its space does not change)."""
        if policy_id not in self._layouts:
            self._layouts[policy_id] = feature_layout(observation_space)
        return self._layouts[policy_id]

    def _names_for(self, algorithm: Any, summary: MergedSummary) -> list[str]:
        space = algorithm.get_policy(summary.policy_id).observation_space
        return self._feature_names(summary.policy_id, len(summary.mean_abs), space)

    def _shares(self, algorithm: Any, summary: MergedSummary) -> dict[str, float]:
        """Each top-level key's share of the total mean |attribution| (structured observations)."""
        space = algorithm.get_policy(summary.policy_id).observation_space
        top_keys = self._layout_of(summary.policy_id, space).top_keys
        total = float(summary.mean_abs.sum())
        if top_keys is None or total <= 0:
            return {}
        shares: dict[str, float] = {}
        for key, value in zip(top_keys, summary.mean_abs, strict=True):
            shares[key] = shares.get(key, 0.0) + float(value) / total
        return shares

    @staticmethod
    def _trust_tags(summary: MergedSummary) -> dict[str, float]:
        """Trust metrics by tag (without the ``saliency/`` prefix)."""
        base = f"{summary.policy_id}/{summary.target}"
        return {
            (
                f"{base}/{name}" if name.startswith("agreement/") else f"{base}/{summary.method}/trust/{name}"
            ): value
            for name, value in summary.trust.items()
        }

    def _result_scalars(self, merged: list[MergedSummary], names: dict[tuple, list[str]]) -> dict[str, Any]:
        # np.longdouble: Tune's TensorBoard logger writes only int/float/float32/float64
        # scalars and skips other types, while its CSV/JSON/MLflow/W&B loggers take any
        # number. So the values reach every other logger, and TensorBoard holds one
        # copy: ours, under the documented tags. (See README, "Training result".)
        return {
            f"{s.policy_id}/{s.target}/{s.method}/mean_abs/{name}": np.longdouble(value)
            for s in merged
            for name, value in zip(names[s.key], s.mean_abs, strict=True)
        }

    def _write(
        self,
        algorithm: Any,
        merged: list[MergedSummary],
        names: dict[tuple, list[str]],
        shares: dict[tuple, dict[str, float]],
        step: int,
    ) -> None:
        if not merged:
            return
        writer = self._get_writer(algorithm)
        if writer is None:
            return
        from rllib_saliency import render

        if not self._config_written:
            writer.text(f"{RESULT_KEY}/config", self._config_markdown(), step)
            self._config_written = True
        images_due = self._computations_done() % self.settings.image_every == 0
        for summary in merged:
            feature_names = names[summary.key]
            prefix = f"{RESULT_KEY}/{summary.policy_id}/{summary.target}/{summary.method}"
            scalars = dict(
                zip([f"{prefix}/mean_abs/{n}" for n in feature_names], summary.mean_abs, strict=True)
            )
            scalars.update({f"{prefix}/share/{key}": v for key, v in shares[summary.key].items()})
            scalars.update({f"{RESULT_KEY}/{tag}": v for tag, v in self._trust_tags(summary).items()})
            writer.scalars(scalars, step)
            writer.histogram(
                f"{prefix}/distribution", summary.histogram_values, summary.histogram_weights, step
            )
            self._history.add(prefix, step, [float(v) for v in summary.mean_abs])
            history = self._history[prefix]
            if images_due:
                title = f"{summary.policy_id} / {summary.target} / {summary.method}"
                if summary.map_values is not None:  # image observations: heatmaps over frames
                    importance = render.saliency_grid(
                        summary.map_observations, summary.map_values, title, self.settings.frame_maps
                    )
                else:
                    importance = render.importance_chart(summary.mean_abs, feature_names, title)
                writer.image(f"{prefix}/importance", *importance, step)
                for name, (observations, maps) in summary.component_maps.items():
                    # An image inside a Dict/Tuple observation: its own heatmap grid.
                    grid = render.saliency_grid(
                        observations, maps, f"{title} / {name}", self.settings.frame_maps
                    )
                    writer.image(f"{prefix}/importance/{name}", *grid, step)
                writer.image(
                    f"{prefix}/evolution",
                    *render.evolution_heatmap(history.values, history.steps, feature_names, title),
                    step,
                )
        writer.flush()

    def _maximize_activations(self, algorithm: Any, reports: list[dict], result: dict, step: int) -> None:
        """Activation maximization per policy and action, from sampled observations (driver side)."""
        from rllib_saliency import render
        from rllib_saliency.activation import maximize_activation

        observations: dict[str, list[np.ndarray]] = {}
        for report in reports:
            for policy_id, obs in report.get("observations", {}).items():
                observations.setdefault(policy_id, []).append(obs)
        writer = self._get_writer(algorithm)
        for policy_id, chunks in observations.items():
            policy = algorithm.get_policy(policy_id)
            obs = np.concatenate(chunks)
            feature_names = self._layout_of(policy_id, policy.observation_space).names
            for target in _all_action_targets(policy.action_space):
                try:
                    found = maximize_activation(
                        policy,
                        target,
                        obs=obs,
                        seed=self.settings.seed,
                        **self.settings.activation_maximization_options,
                    )
                    value = float(found.target_values[-1].max())
                    tag = f"{policy_id}/actmax/{target}"
                    result[RESULT_KEY][f"{tag}/value"] = np.longdouble(value)
                    if writer is None:
                        continue
                    writer.scalars({f"{RESULT_KEY}/{tag}/value": value}, step)
                    best = found.inputs[found.best]
                    title = f"{policy_id}: input maximising {target} ({value:.3g})"
                    if best.ndim == 3:
                        image = render.activation_images(best, found.mean, found.low, found.high, title)
                    else:
                        names = (
                            feature_names
                            if best.size == len(feature_names)
                            else [f"f{i}" for i in range(best.size)]
                        )
                        flat = [np.asarray(v).reshape(-1) for v in (best, found.mean, found.low, found.high)]
                        image = render.activation_chart(*flat, names, title)
                    writer.image(f"{RESULT_KEY}/{tag}/input", *image, step)
                except Exception as error:  # noqa: BLE001 - never breaks training
                    self.errors.exception(f"activation maximization {policy_id}/{target}", error)
        if writer is not None:
            writer.flush()

    def _computations_done(self) -> int:
        return self._history.computations

    def _get_writer(self, algorithm: Any) -> Any:
        """The one writer of this run, created on first use; retried after a failure."""
        if self._writer is None:
            from rllib_saliency.writer import SaliencyWriter

            logdir = self.settings.logdir or default_logdir(algorithm)
            try:
                self._writer = SaliencyWriter(logdir)
                self._load_history()
            except Exception as error:  # noqa: BLE001 - e.g. an unwritable log dir
                self.errors.exception(f"opening the TensorBoard log dir {logdir!r}", error)
        return self._writer

    def _load_history(self) -> None:
        """After a restore into the same log dir, the evolution image keeps its history."""
        path = os.path.join(self._writer.logdir, HISTORY_FILE)
        if not os.path.exists(path):
            self._history.attach(path)
            return
        self._history = EvolutionHistory(path)
        self._config_written = True
        if self._history.unreadable_lines:
            logger.warning(
                "%s: %d unreadable line(s) skipped; the evolution image lacks those computations.",
                path,
                self._history.unreadable_lines,
            )

    def _config_markdown(self) -> str:
        rows = "\n".join(f"| {k} | `{v!r}` |" for k, v in asdict(self.settings).items())
        return f"rllib-saliency settings\n\n| option | value |\n|---|---|\n{rows}"
