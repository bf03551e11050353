"""Driver side of the training callback: merge the workers' summaries, write TensorBoard, fill the result.

Stack-independent: it asks the stack package (:mod:`rllib_saliency.stacks`)
for a model by id (its spaces, for names and activation maximization) and,
on the old stack, for the learner's weights fingerprint; everything else is
the same on both stacks. One writer per run, created on first use.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from rllib_saliency.callbacks.episodes import TrainingEpisodes
from rllib_saliency.callbacks.errors import ErrorLog
from rllib_saliency.callbacks.images import BackgroundImages
from rllib_saliency.callbacks.schedule import ComputationSchedule
from rllib_saliency.callbacks.settings import SaliencySettings
from rllib_saliency.history import HISTORY_FILE, EvolutionHistory
from rllib_saliency.sample_summaries import ComputationPlan, has_further_parts
from rllib_saliency.summaries import MergedSummary, feature_layout, merge

logger = logging.getLogger("rllib_saliency")

RESULT_KEY = "saliency"


def all_action_targets(action_space: Any) -> list[str]:
    """One target per action: every logit of a Discrete space, every Box dimension or
    MultiDiscrete sub-action."""
    import gymnasium as gym

    from rllib_saliency.targets import action_targets

    if isinstance(action_space, gym.spaces.Discrete):
        return [f"action_{k}" for k in range(int(action_space.n))]
    return action_targets(action_space)


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


class Reporter:
    """Merges, writes and reports saliency computations; holds the writer and the evolution history."""

    def __init__(self, settings: SaliencySettings, stack: Any) -> None:
        self.settings = settings
        self.stack = stack
        self.errors = ErrorLog()
        self._writer: Any = None
        self._config_written = False
        self._history = EvolutionHistory()
        self._layouts: dict[str, Any] = {}
        self._target_texts: dict[tuple[str, str], str] = {}
        self._skipped: dict[str, int] = {}
        # Spaces that name a model's features better than its own (see stacks/new/training.py).
        self._layout_spaces: dict[str, Any] = {}
        # The last computation's summaries while its images are not written yet (images come
        # every ``image_every``-th computation): written when training stops or is saved.
        self._unimaged: tuple[Any, ...] | None = None
        self._images = BackgroundImages(self.errors)
        self._episodes = TrainingEpisodes(settings, stack, self.errors, self._images)
        self.schedule = ComputationSchedule(
            settings.every, settings.max_overhead, has_further_parts(settings)
        )

    def on_train_result(
        self, algorithm: Any, result: dict, collect: Callable[[ComputationPlan], list[dict]]
    ) -> None:
        """One computation, if due: ``collect(plan)`` asks the stack for its workers' reports."""
        started = time.perf_counter()
        plan = None
        deferred: dict[str, float] = {}
        try:
            iteration = int(result["training_iteration"])
            plan = self.schedule.plan(result)
            if plan is None:
                return
            # The step Tune's TensorBoard logger uses for this result, so our
            # events line up with RLlib's curves.
            step = int(result.get("timesteps_total") or iteration)
            reports = collect(plan)
            # Workers explain side by side: the slowest one's deferred parts are what a
            # complete computation would add.
            deferred = max(
                (report.get("deferred") or {} for report in reports),
                key=lambda parts: (sum(parts.values()), len(parts)),
                default={},
            )
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
            if self._episodes.due(self._computations_done()):  # ``episode_every``, never raises
                writer = self._get_writer(algorithm)
                self._episodes.maybe_log(algorithm, writer, self._computations_done(), step, result)
            # What this computation cost the training loop (driver wall time).
            result[RESULT_KEY]["seconds"] = time.perf_counter() - started
            if plan.light or deferred:  # the parts of the configured work this one left out
                result[RESULT_KEY]["partial"] = 1
        except Exception as error:  # noqa: BLE001 - a logging failure never kills training
            self.errors.exception("saliency computation", error)
        finally:
            # A failed computation's time counts too: it blocked training all the same. The share
            # of all computations so far is what ``max_overhead`` bounds.
            if plan is not None:
                self.schedule.computed(time.perf_counter() - started, plan, deferred)
                if isinstance(result.get(RESULT_KEY), dict):
                    result[RESULT_KEY]["overhead"] = self.schedule.share()
        if self.errors.total and isinstance(result, dict):
            result.setdefault(RESULT_KEY, {})["errors"] = self.errors.total

    def _merge_reports(self, algorithm: Any, reports: list[dict[str, Any]]) -> list[MergedSummary]:
        summaries = []
        self._skipped = {}
        for report in reports:
            for policy_id, count in report.get("skipped", {}).items():
                self._skipped[policy_id] = self._skipped.get(policy_id, 0) + count
            self._layout_spaces.update(report.get("layout_spaces", {}))
            for stage, kind, details, times in report.get("errors", []):
                self.errors.record(stage, kind, details, times)
            for policy_id, fingerprint in report.get("fingerprints", {}).items():
                self._check_weights(algorithm, policy_id, fingerprint)
            summaries += report.get("summaries", [])
        return merge(summaries, self.settings.max_images)

    def _check_weights(self, algorithm: Any, policy_id: str, fingerprint: float) -> None:
        learner = self.stack.weights_fingerprint(algorithm, policy_id)
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

    def _space_of(self, algorithm: Any, policy_id: str) -> Any:
        """The space whose structure names the model's features."""
        return self._layout_spaces.get(policy_id) or self.stack.model(algorithm, policy_id).observation_space

    def _target_text(self, algorithm: Any, policy_id: str, target: str) -> str:
        """What the target's number is for this policy's kind of model, in words (a Q-network's
        action is its Q-value, not a logit), worked out once per policy and target."""
        key = (policy_id, target)
        if key not in self._target_texts:
            from rllib_saliency.backends import model_kind
            from rllib_saliency.targets import describe_target

            try:
                model = self.stack.model(algorithm, policy_id)
                text = describe_target(target, model_kind(model), model.action_space)
            except Exception as error:  # noqa: BLE001 - charts say every kind's meaning instead
                self.errors.exception("target meaning", error)
                text = describe_target(target)
            self._target_texts[key] = text
        return self._target_texts[key]

    def _names_for(self, algorithm: Any, summary: MergedSummary) -> list[str]:
        space = self._space_of(algorithm, summary.policy_id)
        return self._feature_names(summary.policy_id, len(summary.mean_abs), space)

    def _shares(self, algorithm: Any, summary: MergedSummary) -> dict[str, float]:
        """Each top-level key's share of the total mean |attribution| (structured observations)."""
        space = self._space_of(algorithm, summary.policy_id)
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
        images_only: bool = False,
    ) -> None:
        """One computation's events; ``images_only``: just its images, for a computation that was
        written without them (see :meth:`write_final_images`)."""
        if not merged:
            return
        writer = self._get_writer(algorithm)
        if writer is None:
            return

        if not self._config_written:
            meanings = {
                (s.policy_id, s.target): self._target_text(algorithm, s.policy_id, s.target) for s in merged
            }
            writer.text(f"{RESULT_KEY}/config", self._config_markdown(meanings), step)
            self._config_written = True
        images_due = images_only or self._computations_done() % self.settings.image_every == 0
        self._unimaged = None if images_due else (merged, names, shares, step)
        jobs: list[Callable[[], None]] = []
        for summary in merged:
            feature_names = names[summary.key]
            prefix = f"{RESULT_KEY}/{summary.policy_id}/{summary.target}/{summary.method}"
            scalars = dict(
                zip([f"{prefix}/mean_abs/{n}" for n in feature_names], summary.mean_abs, strict=True)
            )
            scalars.update({f"{prefix}/share/{key}": v for key, v in shares[summary.key].items()})
            scalars.update({f"{RESULT_KEY}/{tag}": v for tag, v in self._trust_tags(summary).items()})
            if not images_only:
                writer.scalars(scalars, step)
                writer.histogram(
                    f"{prefix}/distribution", summary.histogram_values, summary.histogram_weights, step
                )
                self._history.add(prefix, step, [float(v) for v in summary.mean_abs])
            if images_due:
                history = self._history[prefix]
                # A snapshot: the next computation may add columns while this one's images render.
                jobs.append(
                    functools.partial(
                        self._write_images,
                        writer,
                        summary,
                        self._target_text(algorithm, summary.policy_id, summary.target),
                        feature_names,
                        (list(history.steps), list(history.values)),
                        step,
                    )
                )
        writer.flush()
        if jobs:

            def render_and_write() -> None:
                for job in jobs:
                    job()
                writer.flush()

            self._images.submit(render_and_write)

    def _write_images(
        self,
        writer: Any,
        summary: MergedSummary,
        target_text: str,
        feature_names: list[str],
        history: tuple[list[int], list[list[float]]],
        step: int,
    ) -> None:
        """One summary's charts (runs on the image thread, see ``callbacks/images.py``);
        ``target_text``: what the target's number is (``_target_text``)."""
        from rllib_saliency import render

        prefix = f"{RESULT_KEY}/{summary.policy_id}/{summary.target}/{summary.method}"
        title = f"{summary.policy_id} / {summary.target} / {summary.method}"
        # The options that change the picture, and what the target is, on the chart.
        options = self.settings.method_options.get(summary.method)
        image_obs = summary.map_values is not None or bool(summary.component_maps)
        subtitle = render.chart_subtitle(
            summary.method, options, summary.target, image_obs, target_text=target_text
        )
        if summary.map_values is not None:  # image observations: heatmaps over frames
            importance = render.saliency_grid(
                summary.map_observations,
                summary.map_values,
                title,
                self.settings.frame_maps,
                subtitle=subtitle,
            )
        else:
            importance = render.importance_chart(summary.mean_abs, feature_names, title, subtitle)
        writer.image(f"{prefix}/importance", *importance, step)
        for name, (observations, maps) in summary.component_maps.items():
            # An image inside a Dict/Tuple observation: its own heatmap grid.
            grid = render.saliency_grid(
                observations, maps, f"{title} / {name}", self.settings.frame_maps, subtitle=subtitle
            )
            writer.image(f"{prefix}/importance/{name}", *grid, step)
        evolution_subtitle = render.chart_subtitle(
            summary.method, options, summary.target, image_obs, evolution=True, target_text=target_text
        )
        steps, values = history
        writer.image(
            f"{prefix}/evolution",
            *render.evolution_heatmap(values, steps, feature_names, title, evolution_subtitle),
            step,
        )

    def wait_for_images(self) -> None:
        """Block until the images rendering in the background are in the event files."""
        self._images.wait()

    def write_final_images(self, algorithm: Any) -> bool:
        """Write the last computation's images if its turn for images had not come (training
        stops or is saved: the final state is always visible), and wait until every pending image
        is in the event files. True if it wrote any; never raises."""
        wrote = False
        try:
            if self._unimaged is not None:
                self._write(algorithm, *self._unimaged, images_only=True)
                wrote = True
            self._images.wait()
        except Exception as error:  # noqa: BLE001 - a logging failure never breaks training
            self._unimaged = None
            self.errors.exception("final images", error)
            return False
        return wrote

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
            policy = self.stack.model(algorithm, policy_id)
            obs = np.concatenate(chunks)
            feature_names = self._layout_of(policy_id, self._space_of(algorithm, policy_id)).names
            for target in all_action_targets(policy.action_space):
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
                    title = f"{policy_id}: input maximising {target}"
                    subtitle = f"{self._target_text(algorithm, policy_id, target)}; reached {value:.3g}"
                    if best.ndim == 3:
                        image = render.activation_images(
                            best, found.mean, found.low, found.high, title, subtitle
                        )
                    else:
                        names = (
                            feature_names
                            if best.size == len(feature_names)
                            else [f"f{i}" for i in range(best.size)]
                        )
                        flat = [np.asarray(v).reshape(-1) for v in (best, found.mean, found.low, found.high)]
                        image = render.activation_chart(*flat, names, title, subtitle)
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

    def _config_markdown(self, meanings: dict[tuple[str, str], str]) -> str:
        """The settings, the method options in effect and ``meanings``: what each (policy,
        target)'s number is."""
        from rllib_saliency.methods import METHODS
        from rllib_saliency.methods.base import fill_defaults

        rows = "\n".join(f"| {k} | `{v!r}` |" for k, v in asdict(self.settings).items())
        # Every method's options with the defaults filled in: what the pictures were made with.
        methods = "\n".join(
            f"| {m} | `{fill_defaults(METHODS[m], self.settings.method_options.get(m, {}))!r}` |"
            for m in self.settings.methods
        )
        targets = "\n".join(f"- {policy_id}: {text}" for (policy_id, _), text in sorted(meanings.items()))
        return (
            f"rllib-saliency settings\n\n| option | value |\n|---|---|\n{rows}\n\n"
            f"Method options in effect (defaults filled in)\n\n| method | options |\n|---|---|\n{methods}\n\n"
            f"Targets\n\n{targets}\n\nEvolution images: each column holds one computation's "
            "shares of mean |attribution|, summing to 1."
        )
