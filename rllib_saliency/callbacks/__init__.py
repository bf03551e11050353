"""SaliencyCallbacks: sample observations during training, explain them, log compact summaries to
TensorBoard from the driver. One class for both RLlib stacks.

Design (one computation per training iteration while it costs at most ``max_overhead`` of the
training time, or exactly every ``every`` iterations):

1. ``on_sample_end`` (on each env runner that samples) offers the sampled rows to
   a per-model reservoir of ``num_samples`` rows (:mod:`.sampling`). The stack
   adapter (:mod:`rllib_saliency.stacks`) reads them from a ``SampleBatch`` (old
   stack) or from episodes (new stack).
2. ``on_train_result`` (on the driver, after the new weights reached the env
   runners) asks the stack adapter for reports: on the old stack every runner
   explains its reservoir with its own TF policy; on the new stack the learner's
   torch module explains the runners' reservoirs (:mod:`.compute` either way).
   Failures come back as data, never as exceptions.
3. The driver merges the summaries and alone writes TensorBoard events (one
   writer, created once) and adds the scalars to the training result (:mod:`.report`).

Nothing here may break training: every stage runs under an error guard that logs
the first traceback of each kind, then counts (:mod:`.errors`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from rllib_saliency.callbacks.report import RESULT_KEY, Reporter, default_logdir
from rllib_saliency.callbacks.sampling import SampleStore
from rllib_saliency.callbacks.settings import (
    ACTIVATION_OPTIONS,
    DEFAULT_EPISODE_MAX_STEPS,
    DEFAULT_MAX_OVERHEAD,
    DEFAULT_TRUST_METRICS,
    TRUST_METRICS,
    SaliencySettings,
    make_settings,
)
from rllib_saliency.sample_summaries import Sample

logger = logging.getLogger("rllib_saliency")

__all__ = [
    "ACTIVATION_OPTIONS",
    "DEFAULT_TRUST_METRICS",
    "RESULT_KEY",
    "TRUST_METRICS",
    "SaliencyCallbacks",
    "SaliencySettings",
    "default_logdir",
    "find_saliency_callbacks",
]


def _instances(holder: Any) -> Iterator[Any]:
    """Callback objects in a holder: one object or a list of them (new stack), each possibly a
    ``make_multi_callbacks`` wrapper whose ``_callback_list`` holds more."""
    for item in holder if isinstance(holder, (list, tuple)) else [holder]:
        yield item
        yield from getattr(item, "_callback_list", [])


def _saliency_callbacks(callbacks: Any) -> SaliencyCallbacks | None:
    """Our instance inside a worker's callbacks object (kept for tests and user code)."""
    return next((c for c in _instances(callbacks) if isinstance(c, SaliencyCallbacks)), None)


def find_saliency_callbacks(runner: Any) -> SaliencyCallbacks | None:
    """Our instance on an env runner or algorithm: old stack ``worker.callbacks``, new stack
    ``env_runner._callbacks`` / ``algorithm.callbacks`` (lists)."""
    for name in ("callbacks", "_callbacks"):
        holder = getattr(runner, name, None)
        found = None if holder is None else _saliency_callbacks(holder)
        if found is not None:
            return found
    return None


# Algorithm methods that end training or save it: ``cleanup`` (``Algorithm.stop()``, also Tune's
# stop of a trial), ``save_checkpoint`` (``Algorithm.save()``, Tune's checkpoints; both stacks) and
# ``save_to_path`` (new stack, called directly or by ``save_checkpoint``).
FINAL_IMAGE_METHODS = ("cleanup", "save_checkpoint", "save_to_path")


def _write_final_images_on_stop_and_save(algorithm: Any, callbacks: SaliencyCallbacks) -> None:
    """Wrap the algorithm's own stop and save methods so that they first write the last
    computation's images. RLlib's callbacks have no stop or save hook (``on_checkpoint_loaded``
    is for restoring), so the wrappers go on this algorithm instance (not its class). They
    call the original method whatever happens to the images."""
    for name in FINAL_IMAGE_METHODS:
        original = getattr(algorithm, name, None)
        if original is None or getattr(original, "_rllib_saliency_final_images", False):
            continue

        def wrapper(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            try:
                callbacks.flush(algorithm)
            except Exception as error:  # noqa: BLE001 - stopping and saving must go on
                logger.exception("rllib_saliency: final images failed: %s", error)
            return _original(*args, **kwargs)

        functools.update_wrapper(wrapper, original)
        wrapper._rllib_saliency_final_images = True  # type: ignore[attr-defined]
        setattr(algorithm, name, wrapper)


class SaliencyCallbacks(RLlibCallback):
    """Logs input attributions of every TF policy (old API stack) or torch RLModule (new API stack)
    to TensorBoard during training.

    ``config.callbacks(SaliencyCallbacks)`` for defaults, or
    ``config.callbacks(SaliencyCallbacks.configure(every=5, ...))``.
    """

    def __init__(self, settings: SaliencySettings | None = None) -> None:
        super().__init__()
        self.settings = settings or SaliencySettings()
        # Env-runner side: reservoirs (and, old stack, the explaining).
        self.store = SampleStore(self.settings)
        self.rng = np.random.default_rng(self.settings.seed)
        # What was explained last, per model id (on the runner that explained it).
        self.last_explained: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.last_states: dict[str, tuple[np.ndarray, ...]] = {}
        # Driver side, created with the algorithm.
        self._reporter: Reporter | None = None
        self._computations = 0

    @classmethod
    def configure(
        cls,
        *,
        every: int | None = None,
        max_overhead: float = DEFAULT_MAX_OVERHEAD,
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
        episode_every: int | None = None,
        episode_max_steps: int = DEFAULT_EPISODE_MAX_STEPS,
        episode_method: str = "gradient",
        seed: int = 0,
    ) -> functools.partial:
        """Validate options now and return a callable for ``AlgorithmConfig.callbacks``.

        Args:
            every: training iterations between saliency computations. Default ``None``:
                within ``max_overhead`` of the training's wall time. The first iteration
                always computes: the first method of every target, and the further parts
                (other methods, deletion, randomization) while they fit 2 s, priced from
                the first method's time per pass. A model whose complete computation fits
                one iteration's share computes after every iteration while the share so
                far allows; a costlier one gets complete computations when the budget has
                room for them and light ones (the first method) on half of it in between
                (``result["saliency"]["partial"]`` marks those; ``callbacks/schedule.py``).
            max_overhead: with ``every=None``, that share (default 0.05: 5 %). Ignored
                with an explicit ``every``, which computes everything on that schedule,
                whatever it costs.
            num_samples: observations per policy (module) per env runner per
                computation (a uniform reservoir over all batches since the last one).
            methods: attribution methods (see ``rllib_saliency.METHODS``).
            targets: ``"action"`` (for Box action spaces: every dimension,
                logged as ``action_0``, ``action_1``, ...), ``"action_K"``,
                ``"logp"`` (of the actions taken), ``"value"``, ``"advantage"`` (dueling
                Q-networks, opt-in). What each means per module kind: README's algorithm table.
            method_options: per-method keyword options, e.g.
                ``{"integrated_gradients": {"steps": 16}}``.
            policies: policy ids (new stack: module ids) to explain; default all
                supported ones.
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
            episode_every: every this many saliency computations (the first one
                included), play one greedy episode with the current weights on the
                driver and log it: an animated GIF under ``saliency/{policy_id}/episode``
                and the explorer page ``episodes/step_{N}.html`` beside the events
                (default off: it blocks training while it runs; single-agent runs only).
            episode_max_steps: such an episode is cut after this many steps (bounds its cost).
            episode_method: the attribution method of the episode's maps (its options
                come from ``method_options`` if it is also one of ``methods``).
            seed: seeds sampling and SmoothGrad noise.
        """
        settings = make_settings(
            every=every,
            max_overhead=max_overhead,
            num_samples=num_samples,
            methods=methods,
            targets=targets,
            method_options=method_options,
            policies=policies,
            feature_names=feature_names,
            logdir=logdir,
            max_images=max_images,
            image_every=image_every,
            frame_maps=frame_maps,
            trust_metrics=trust_metrics,
            activation_maximization_every=activation_maximization_every,
            activation_maximization_options=activation_maximization_options,
            episode_every=episode_every,
            episode_max_steps=episode_max_steps,
            episode_method=episode_method,
            seed=seed,
        )
        return functools.partial(cls, settings=settings)

    # ----- env runner side -------------------------------------------------------------

    def on_sample_end(
        self, *, env_runner: Any = None, samples: Any = None, worker: Any = None, **kwargs: Any
    ) -> None:
        from rllib_saliency import stacks

        try:
            stacks.sample(self, samples, env_runner, worker)
        except Exception as error:  # noqa: BLE001 - sampling must go on
            self.store.errors.exception("sampling", error)

    def remember(self, model_id: str, sample: Sample) -> None:
        self.last_explained[model_id] = (sample.obs, sample.actions)
        self.last_states[model_id] = sample.states

    def add_starting_points(self, report: dict[str, Any], samples: dict[str, Sample]) -> None:
        """Observations for activation maximization on the driver, if it is on."""
        if self.settings.activation_maximization_every:
            rows = int(self.settings.activation_maximization_options.get("n_starts", 8))
            report["observations"] = {model_id: s.obs[:rows] for model_id, s in samples.items()}

    def computation_seed(self) -> list[int]:
        return [self.settings.seed, self._computations]

    # ----- driver side -----------------------------------------------------------------

    def on_algorithm_init(self, *, algorithm: Any = None, **kwargs: Any) -> None:
        """Write the last computation's images when training stops or is saved (see
        :func:`_write_final_images_on_stop_and_save`)."""
        try:
            _write_final_images_on_stop_and_save(algorithm, self)
        except Exception as error:  # noqa: BLE001 - never breaks training
            logger.exception("rllib_saliency: cannot hook the algorithm's stop and save: %s", error)
        try:  # e.g. offline algorithms (no env runners): hook the learners' training batches
            from rllib_saliency.stacks import stack_of

            stack_of(algorithm).on_algorithm_init(self, algorithm)
        except Exception as error:  # noqa: BLE001 - never breaks training
            logger.exception("rllib_saliency: cannot prepare sampling: %s", error)

    def flush(self, algorithm: Any) -> None:
        """Put everything in the event files now: the last computation's images, if the
        ``image_every`` cadence left them out, and the images still rendering in the
        background (``callbacks/images.py``). ``algo.stop()`` and ``algo.save()`` call it;
        call it yourself to read the event files between ``train()`` calls."""
        if self._reporter is not None:
            self._reporter.write_final_images(algorithm)

    def on_train_result(self, *, algorithm: Any = None, result: dict | None = None, **kwargs: Any) -> None:
        from rllib_saliency.stacks import stack_of

        try:
            if self._reporter is None:
                self._reporter = Reporter(self.settings, stack_of(algorithm))
            stack = self._reporter.stack
        except Exception as error:  # noqa: BLE001 - a logging failure never kills training
            logger.exception("rllib_saliency: set-up failed: %s", error)
            return
        self._computations += 1
        collect = functools.partial(stack.collect, self, algorithm, find_saliency_callbacks)
        self._reporter.on_train_result(algorithm, result, collect)
