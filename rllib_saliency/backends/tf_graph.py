"""Backend for graph-mode ("tf") RLlib policies: a private replica, zero ops in the policy graph.

Adding gradient ops to the policy's own graph makes it grow on every call (and
makes checkpoints loaded later grow too). Instead the model is rebuilt the way
RLlib builds it (``ModelCatalog.get_model_v2`` with the policy's model config)
in a private ``tf.Graph`` with its own ``Session``. Every tensor this backend
needs (targets, gradients, weight-assign ops) is built there once. Weights are
read from the policy's session with ``session.run(model.variables())``, which
creates no ops, and fed into the replica through placeholders.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from rllib_saliency.backends._tf_targets import (
    rebuild_model,
    refuse_advantage,
    target_tensor,
    value_function_error,
)
from rllib_saliency.backends.base import ModelOutputs, check_state_count
from rllib_saliency.recurrent import recurrent_layout
from rllib_saliency.targets import ResolvedTarget

tf1 = tf.compat.v1


# Session callables release themselves in __del__, which fails with an "Exception
# ignored" traceback when that runs during interpreter teardown; drop them at exit.
_LIVE_BACKENDS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _release_callables() -> None:
    for backend in list(_LIVE_BACKENDS):
        backend.release_callables()


def session_callable(
    session: Any, feeds: list[tf.Tensor], fetches: list[tf.Tensor]
) -> Callable[..., list[np.ndarray]]:
    """A callable taking one array per feed and returning the fetches' values as a list.

    ``Session.make_callable`` with feeds falls back to ``session.run`` on every call,
    which re-analyses fetches and feeds each time; ``_make_callable_from_options`` is
    what tf-keras' graph functions use instead (TF1 sessions are frozen API). It
    adds no op to the session's graph.
    """
    options = config_pb2.CallableOptions()
    options.feed.extend(t.name for t in feeds)
    options.fetch.extend(t.name for t in fetches)
    run = session._make_callable_from_options(options)  # noqa: SLF001
    dtypes = [t.dtype.as_numpy_dtype for t in feeds]

    def call(*arrays: np.ndarray) -> list[np.ndarray]:
        return run(*(np.asarray(a, d) for a, d in zip(arrays, dtypes, strict=True)))

    return call


class TFGraphBackend:
    """Evaluates targets and input gradients of a graph-mode policy in a private graph."""

    def __init__(self, policy: Any, policy_id: str) -> None:
        self._policy = policy
        self._policy_id = policy_id
        self._graph = tf.Graph()
        self._session = tf1.Session(graph=self._graph)
        self._targets: dict[str, tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]] = {}
        self._synced_weights: list[np.ndarray] | None = None
        self._fixed_weights = False
        # Session callables, made once: a plain session.run() re-analyses its fetches and
        # feeds on every call, and model.variables() walks the Keras layers each time;
        # together they cost more than the model at N=64. Making a callable adds no op.
        policy_session = policy.get_session()
        self._read_policy_weights = session_callable(
            # as_graph_element: the tensor session.run(variable) reads, no new op.
            policy_session, [], [policy_session.graph.as_graph_element(v) for v in policy.model.variables()]
        )
        self._callables: dict[tuple[str, bool], Callable[..., list[np.ndarray]]] = {}
        _LIVE_BACKENDS.add(self)
        with self._graph.as_default():
            self.obs = tf1.placeholder(tf.float32, (None, *policy.observation_space.shape), name="obs")
            # Recurrent models: one step per sample, from the state fed for that sample.
            # (and the previous actions/rewards, if the model is fed them).
            layout = recurrent_layout(policy)
            self._state_inputs = [
                tf1.placeholder(tf.as_dtype(i.dtype), (None, *i.shape), name=i.name) for i in layout.inputs
            ]
            states, previous = layout.split(self._state_inputs)
            self._model = rebuild_model(policy, "tf", "saliency_replica")
            seq_lens = tf.ones(tf.shape(self.obs)[:1], tf.int32) if states else None
            self._dist_inputs, self._state_outs = self._model(
                {"obs": self.obs, "is_training": tf.constant(False), **previous}, states, seq_lens
            )
            dist = policy.dist_class(self._dist_inputs, self._model)
            self._greedy_actions = dist.deterministic_sample()
            self._replica_variables = self._model.variables()
            self._check_replica_matches()
            self._weight_inputs = [
                tf1.placeholder(v.dtype.base_dtype, v.shape) for v in self._replica_variables
            ]
            self._assign = tf.group(
                *[v.assign(p) for v, p in zip(self._replica_variables, self._weight_inputs, strict=True)]
            )
            self._session.run(tf1.variables_initializer(self._replica_variables))
        self._run_forward = session_callable(
            self._session,
            [self.obs, *self._state_inputs],
            [self._dist_inputs, self._greedy_actions, *self._state_outs],
        )

    def release_callables(self) -> None:
        """At interpreter exit: drop the session callables while TensorFlow can still release them."""
        self._callables.clear()
        self._read_policy_weights = self._run_forward = None  # type: ignore[assignment]

    def _check_replica_matches(self) -> None:
        ours = [tuple(v.shape.as_list()) for v in self._replica_variables]
        theirs = [tuple(v.shape.as_list()) for v in self._policy.model.variables()]
        if ours != theirs:
            raise TypeError(
                f"policy {self._policy_id!r}: its model ({type(self._policy.model).__name__}) "
                "was not built by ModelCatalog.get_model_v2 from the policy's model "
                "config (a policy-specific make_model, as in DQN or SAC), so "
                "rllib_saliency cannot replicate it in graph mode without adding ops "
                "to the policy graph. Use framework('tf2') for this algorithm."
            )

    @property
    def graph(self) -> tf.Graph:
        """The private graph (the policy's graph is never touched)."""
        return self._graph

    @property
    def variable_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(v.shape.as_list()) for v in self._replica_variables]

    def load_fixed_weights(self, values: list[np.ndarray]) -> None:
        """Use these weights from now on instead of the policy's (e.g. re-initialised ones)."""
        self._session.run(self._assign, dict(zip(self._weight_inputs, values, strict=True)))
        self._fixed_weights = True

    def sync_weights(self) -> None:
        if self._fixed_weights:
            return
        values = self._read_policy_weights()
        # Feeding weights costs more than comparing them: skip when unchanged.
        if self._synced_weights is not None and all(
            np.array_equal(a, b) for a, b in zip(values, self._synced_weights, strict=True)
        ):
            return
        self._session.run(self._assign, dict(zip(self._weight_inputs, values, strict=True)))
        self._synced_weights = values

    def forward(self, obs: np.ndarray, states: tuple[np.ndarray, ...] = ()) -> ModelOutputs:
        check_state_count(self._policy_id, len(self._state_inputs), states)
        dist_inputs, greedy, *state_outs = self._run_forward(obs, *states)
        return ModelOutputs(dist_inputs, greedy, tuple(state_outs))

    def _target(self, kind: str) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
        """(value, gradient, selection placeholder) for a target kind, built once."""
        if kind not in self._targets:
            with self._graph.as_default():
                selection = None
                if kind == "dist_input":
                    selection = tf1.placeholder(tf.int32, (None,), name="columns")
                elif kind == "logp":
                    space = self._policy.action_space
                    selection = tf1.placeholder(
                        tf.as_dtype(space.dtype), (None, *space.shape), name="actions"
                    )
                try:
                    values = target_tensor(
                        kind, self._dist_inputs, self._model, self._policy.dist_class, selection
                    )
                except (NotImplementedError, AttributeError) as error:
                    if kind == "value":
                        raise value_function_error(self._policy_id, error) from error
                    raise
                gradient = tf.gradients(values, self.obs)[0]
                if gradient is None:  # the target does not depend on the observation
                    gradient = tf.zeros_like(self.obs)
                self._targets[kind] = (values, gradient, selection)
        return self._targets[kind]

    def evaluate(
        self, obs: np.ndarray, target: ResolvedTarget, with_gradient: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        refuse_advantage(target.kind, self._policy_id)
        check_state_count(self._policy_id, len(self._state_inputs), target.states)
        run = self._callable(target.kind, with_gradient)
        feeds = [obs, *target.states]
        if target.kind == "dist_input":
            feeds.append(target.columns)
        elif target.kind == "logp":
            feeds.append(target.actions)
        outputs = run(*feeds)
        return outputs[0], (outputs[1] if with_gradient else None)

    def _callable(self, kind: str, with_gradient: bool) -> Callable:
        key = (kind, with_gradient)
        if key not in self._callables:
            values, gradient, selection = self._target(kind)
            feeds = [self.obs, *self._state_inputs] + ([] if selection is None else [selection])
            fetches = [values, gradient] if with_gradient else [values]
            self._callables[key] = session_callable(self._session, feeds, fetches)
        return self._callables[key]
