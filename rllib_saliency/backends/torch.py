"""Backend for torch RLModules (RLlib's new API stack): the module's own forward pass under autograd.

The module's public ``forward_inference``/``forward_exploration`` run under
``torch.no_grad()``, so this backend calls what they call: ``_forward`` (or a
module's own ``_forward_inference`` override, if it keeps autograd; for RLlib's default
PPO module with separate encoders, only the actor half of ``_forward``, see
:func:`actor_path`), then the
module's action-distribution class for ``logp`` and ``ValueFunctionAPI.compute_values``
for ``value``. Q-networks (DQN) and SAC's twin Q-networks: see :mod:`.torch_heads`
for what each target reads from them. Explaining leaves the module as it was: gradients are taken with
``torch.autograd.grad`` w.r.t. the observation only (no parameter ``.grad`` is
written), ``requires_grad`` flags are not touched, and train/eval mode is restored.
The computation runs on the module's device (a learner's GPU, if it has one).

Targets that need the greedy action ("action", "logp" without actions) are resolved
by a :meth:`TorchBackend.forward` pass at the observations (target "action": by
:meth:`TorchBackend.resolve_greedy`, which finds the greedy columns on the device), then
differentiated by :meth:`TorchBackend.evaluate` at the same observations. Both run
under autograd and keep their pass for the very next ``evaluate``: when that one gets
the same observations and the module's parameters are unchanged (same tensors, same
in-place version counters), it differentiates the kept pass instead of running the
module again. Any ``evaluate`` call drops the kept pass, used or not.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import torch
import tree
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

from rllib_saliency.backends import torch_heads
from rllib_saliency.backends.base import ModelOutputs, check_state_count, finite_rows, reinitialised_weights
from rllib_saliency.errors import UnsupportedModel, UnsupportedTarget
from rllib_saliency.targets import ResolvedTarget, TargetSpec

POLICY_TARGETS = "'action', 'action_K' and 'logp'"


def describe_module(module: Any, module_id: str) -> str:
    return f"module {module_id!r} ({type(module).__name__})"


def value_head_error(module: Any, module_id: str, lacks: str) -> UnsupportedTarget:
    """Target 'value' asked of a module without a value function: what it is, what it lacks, what to do."""
    if getattr(module, "inference_only", False):
        fix = (
            "It is an env runner's inference-only copy (e.g. algo.get_module()), which drops the value "
            "head: pass the algorithm, explain(algo, obs, target='value'), or the learner's module, "
            "rllib_saliency.learner_module(algo), or RLModule.from_checkpoint(<checkpoint>/learner_group/"
            "learner/rl_module/<module_id>)."
        )
    else:
        fix = f"It supports targets {POLICY_TARGETS} (its action-distribution inputs)."
    what = describe_module(module, module_id)
    return UnsupportedTarget(f"target 'value' needs a value function, but {what} {lacks}. {fix}")


def no_dist_inputs_error(module: Any, module_id: str, method: str, keys: list[str]) -> UnsupportedModel:
    """A module whose forward pass gives no action-distribution inputs (e.g. RLlib's DQN module)."""
    return UnsupportedModel(
        f"{describe_module(module, module_id)}: its {method} returns {keys}, no "
        f"'{Columns.ACTION_DIST_INPUTS}', so it has no policy output to explain (targets "
        f"{POLICY_TARGETS} read the action-distribution inputs). rllib-saliency explains modules whose "
        "forward pass returns them, as RLlib's PPO, APPO, IMPALA, SAC, BC and MARWIL modules do, and "
        "Q-networks implementing RLlib's Q-network API (compute_q_values returning 'qf_preds', as DQN's)"
        + (
            "; target 'value' needs RLlib's ValueFunctionAPI (compute_values), which it does not implement."
            if not hasattr(module, "compute_values")
            else "."
        )
    )


def module_device(module: Any) -> torch.device:
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def submodules(module: torch.nn.Module) -> list[torch.nn.Module]:
    """What ``module.modules()`` yields (each once), without the name prefixes it builds: on a
    small network that walk cost a third of an explain() call."""
    found: list[torch.nn.Module] = []
    seen: set[int] = set()
    stack = [module]
    while stack:
        current = stack.pop()
        key = id(current)
        if key not in seen:
            seen.add(key)
            found.append(current)
            children = [child for child in current._modules.values() if child is not None]
            if children:  # (a leaf, most of them: nothing to push)
                children.reverse()  # popped in order, so the walk is module.modules()'s pre-order
                stack.extend(children)
    return found


_CHILDREN = operator.attrgetter("_modules")
_PARAMETERS = operator.attrgetter("_parameters")


def parameters_of(modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
    """``module.parameters()`` (same order, each once) from ``submodules(module)``. (Built by
    C-level maps, no Python step per parameter: the first of each, by id, keeps its place.)"""
    listed = list(chain.from_iterable(map(dict.values, map(_PARAMETERS, modules))))
    by_id = dict(zip(map(id, listed), listed, strict=True))
    by_id.pop(id(None), None)  # (a parameter registered as None)
    return list(by_id.values())


def tree_ids(modules: list[torch.nn.Module]) -> list[int]:
    """The ids of each module's children, module after module, then of each one's parameters: what
    ``submodules`` and ``parameters_of`` read of them (built by C-level maps)."""
    dicts = chain(map(_CHILDREN, modules), map(_PARAMETERS, modules))
    return list(map(id, chain.from_iterable(map(dict.values, dicts))))


_ALIVE = weakref.ref.__call__


class SubmoduleWalk:
    """``submodules(module)`` and ``parameters_of`` them, kept between calls and walked again only
    when the tree may have changed: the kept modules and parameters are held by weak references (a
    module is never kept alive by its backend) and checked, by C-level maps, to be alive, each
    module with the same children and parameters in the same order (a few µs, against the walk's
    15 or more on RLlib's default PPO module). Alive, the same objects with the same ids under
    them: the walk, a function of those alone, gives the same lists. (A child or parameter replaced
    by an object at the freed one's address is no blind spot: the freed one's weak reference is
    dead.)"""

    def __init__(self) -> None:
        self._modules: list[weakref.ref] = []
        self._parameters: list[weakref.ref] = []
        self._ids: list[int] | None = None

    def __call__(self, module: torch.nn.Module) -> tuple[list[torch.nn.Module], list[torch.nn.Parameter]]:
        if self._ids is not None and self._modules[0]() is module:
            modules = list(map(_ALIVE, self._modules))
            parameters = list(map(_ALIVE, self._parameters))
            if (
                all(map(operator.is_not, modules, repeat(None)))
                and all(map(operator.is_not, parameters, repeat(None)))
                and tree_ids(modules) == self._ids
            ):
                return modules, parameters
        modules = submodules(module)
        parameters = parameters_of(modules)
        self._modules = [weakref.ref(m) for m in modules]
        self._parameters = [weakref.ref(p) for p in parameters]
        self._ids = tree_ids(modules)
        return modules, parameters


@contextmanager
def eval_mode(module: Any, modules: list[torch.nn.Module] | None = None) -> Iterator[None]:
    """The module in eval mode (no dropout, frozen batch-norm statistics), restored afterwards.
    ``modules``: its submodules, if the caller has walked them already."""
    modules = submodules(module) if modules is None else modules
    training = [m for m in modules if m.training]
    if training:
        if all(type(m).train is torch.nn.Module.train for m in modules):
            # What module.eval() does, without its recursive nn.Module.__setattr__ calls (which cost
            # about as much as a small network's forward pass); the flag is a plain attribute.
            for m in training:
                object.__setattr__(m, "training", False)
        else:  # a submodule with its own train(): let it do what it does
            module.eval()
    try:
        yield
    finally:
        # Restores each submodule's own flag (mixed modes included).
        for m in training:
            object.__setattr__(m, "training", True)


def outside_inference_mode() -> Any:
    """``torch.inference_mode(False)`` where a caller's ``torch.inference_mode()`` is on (it would
    make the input an inference tensor, which autograd cannot differentiate; set_grad_enabled does
    not undo it); nothing to enter otherwise (each mode switch costs a few µs of a small call)."""
    return torch.inference_mode(False) if torch.is_inference_mode_enabled() else nullcontext()


def grad_mode(enabled: bool) -> Any:
    """``torch.set_grad_enabled(enabled)``, entered only where it changes the mode."""
    return nullcontext() if torch.is_grad_enabled() == enabled else torch.set_grad_enabled(enabled)


def actor_path(module: Any) -> bool:
    """Whether ``module`` is RLlib's default PPO module (or a subclass keeping its ``_forward``)
    with separate, stateless actor and critic encoders and no hooks on its encoder: its
    ``_forward`` then computes ``pi(encoder.actor_encoder(batch))`` as the action-distribution
    inputs, and the critic encoder's half of the pass feeds nothing that an action or logp
    target reads, so the backend runs the actor half alone (same tensors, same operations)."""
    try:
        from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
        from ray.rllib.core.models.torch.encoder import TorchActorCriticEncoder
    except ImportError:  # a future RLlib without these classes: the whole _forward, as always
        return False
    encoder = getattr(module, "encoder", None)
    return (
        type(module)._forward is DefaultPPOTorchRLModule._forward
        and type(module)._forward_inference is TorchRLModule._forward_inference
        and type(encoder) is TorchActorCriticEncoder
        and not encoder.config.shared
        and getattr(encoder, "critic_encoder", None) is not None  # else _forward skips it already
        and not module.is_stateful()
        and not (encoder._forward_hooks or encoder._forward_pre_hooks)
    )


def greedy_action(dist_cls: Any, dist_inputs: torch.Tensor) -> torch.Tensor:
    """The distribution's deterministic action, as ``dist_cls.from_logits(...).to_deterministic()``
    samples it. RLlib's Categorical: the argmax of the logits, taken directly (building torch's
    Categorical normalises the logits: a third of a small explain call's own overhead)."""
    if dist_cls is TorchCategorical:
        return dist_inputs.argmax(dim=-1)
    return dist_cls.from_logits(dist_inputs).to_deterministic().sample()


_VERSION = operator.attrgetter("_version")
_DTYPE = operator.attrgetter("dtype")
_DEVICE = operator.attrgetter("device")


def parameter_state(module: Any, parameters: list[torch.Tensor] | None = None) -> tuple:
    """Which parameter tensors the module has (``parameters``: its list, already gathered), and
    their in-place versions, dtypes and devices (lists, by C-level maps)."""
    listed = list(module.parameters()) if parameters is None else parameters
    return listed, list(map(_VERSION, listed)), list(map(_DTYPE, listed)), list(map(_DEVICE, listed))


def same_parameters(first: tuple, second: tuple) -> bool:
    """The same tensors (one list, within an explain() call), at the same versions, dtypes and devices."""
    a, b = first[0], second[0]
    return len(a) == len(b) and (a is b or all(map(operator.is_, a, b))) and first[1:] == second[1:]


@dataclass
class KeptPass:
    """forward()'s autograd pass, kept for the next evaluate() at the same observations: the same
    array object (explain() passes the chunk it resolved; it never writes to it), not a copy
    compared number by number, which cost more than a GPU's whole pass on image batches."""

    obs: np.ndarray
    inputs: torch.Tensor
    dist_inputs: torch.Tensor
    parameters: tuple
    states: tuple = ()
    # resolve_greedy()'s columns: the array it handed back, and their device copy.
    columns: tuple[np.ndarray, torch.Tensor] | None = None

    def matches(self, obs: np.ndarray, parameters: tuple, states: tuple = ()) -> bool:
        return (
            self.obs is obs
            and len(self.states) == len(states)
            and (
                not states  # (a stateless module)
                or all(
                    a.shape == np.shape(b) and np.array_equal(a, b)
                    for a, b in zip(self.states, states, strict=True)
                )
            )
            and same_parameters(self.parameters, parameters)
        )


def host(tensor: torch.Tensor, dtype: Any) -> np.ndarray:
    """``tensor`` as a numpy array of ``dtype``: one device-to-host copy (none on a CPU), and no
    numpy copy when the dtype is already right."""
    return tensor.detach().cpu().numpy().astype(dtype, copy=False)


def free_memory(device: torch.device) -> int:
    """Bytes a pass may take on ``device``: half of a GPU's free memory (torch's cached, unused
    blocks included), a quarter of the machine's available RAM on a CPU (4 GiB if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return (free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)) // 2
    try:
        with open("/proc/meminfo") as meminfo:
            available = [int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:")]
    except OSError:  # not Linux
        available = []
    return available[0] * 1024 // 4 if available else 4 << 30


# Batches up to this many rows always go through in one pass (the former default batch_size).
ONE_PASS_ROWS = 1024
# Batches up to this size are staged on the device whatever its free memory (256 MiB).
STAGE_ALWAYS_BYTES = 256 << 20


def step_batch(state_structure: Any, obs: torch.Tensor, states: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """A module's input batch for one step per sample: stateful modules (``state_structure``, their
    initial state, else None) get a time axis of one step and ``STATE_IN`` from ``states``, the
    state leaves in ``tree.flatten`` order."""
    if state_structure is None:
        return {Columns.OBS: obs}
    tensors = [torch.as_tensor(np.asarray(s), dtype=obs.dtype, device=obs.device) for s in states]
    return {Columns.OBS: obs[:, None], Columns.STATE_IN: tree.unflatten_as(state_structure, tensors)}


class TorchBackend:
    """Evaluates targets and input gradients of a torch RLModule."""

    def __init__(self, module: Any, module_id: str, *, owned: bool = False) -> None:
        # A weak reference: backend_for() caches backends in a WeakKeyDictionary keyed by the
        # module, and a strong one would keep every explained module alive for good. ``owned``:
        # the backend is the module's only holder (a randomised copy).
        self._module_ref = weakref.ref(module)
        self._owned = module if owned else None
        self._module_id = module_id
        # A module overriding _forward_inference defines its own greedy pass; the default
        # one is _forward under no_grad. (A name, not a bound method: that would hold the module.)
        own = type(module)._forward_inference is not TorchRLModule._forward_inference
        self._forward_name = "_forward_inference" if own else "_forward"
        # "policy", "q" (a Q-network: its Q-values stand in for the action-distribution
        # inputs) or "sac" (a policy plus twin Q-networks): see torch_heads.
        self._kind = torch_heads.module_kind(module)
        self.model_kind = self._kind  # (see backends.model_kind; TF backends: "policy")
        # SAC's value is a Q-value at an action: the engine resolves the greedy action first.
        self.value_needs_action = self._kind == "sac"
        # Its action outputs are Q-values (the movie shows them as such, not as probabilities).
        self.outputs_q_values = self._kind == "q"
        self._actor_path = actor_path(module)
        self._space = module.action_space
        self._kept: KeptPass | None = None
        self._probed_keys: list[str] | None = None  # see _output_keys
        self._explaining = False
        self._parameters: list[torch.Tensor] | None = None  # within explaining()
        # Within explaining(): the explained batch and its copy on the module's device (one
        # host-to-device copy per call; chunks are slices of it).
        self._staged: tuple[np.ndarray, torch.Tensor] | None = None
        self._row_bytes: dict[tuple, int] = {}  # memory a row's pass needs, by (path, row shape)
        self._walk = SubmoduleWalk()
        # Stateful modules (LSTM): one step per sample, from the state given for that sample;
        # the module's initial state gives the nesting its STATE_IN dict has.
        self._state_structure = module.get_initial_state() if module.is_stateful() else None
        self._num_states = 0 if self._state_structure is None else len(tree.flatten(self._state_structure))

    @property
    def _module(self) -> Any:
        module = self._module_ref()
        if module is None:
            raise ReferenceError(f"module {self._module_id!r} of this backend no longer exists.")
        return module

    @property
    def module(self) -> Any:
        return self._module

    @contextmanager
    def explaining(self) -> Iterator[None]:
        """One eval-mode switch for a whole explain() call (its forward and evaluate calls inside
        skip their own): switching every submodule's mode costs about as much as a small
        network's forward pass."""
        if self._explaining:
            yield
            return
        module = self._module
        # One (kept) walk for the modes and the parameters. The parameters are gathered once per
        # call: nothing replaces a parameter between this call's forward and evaluate; in-place
        # updates still show in the version counters that parameter_state compares.
        modules, parameters = self._walk(module)
        with eval_mode(module, modules):
            self._explaining = True
            self._parameters = parameters
            try:
                yield
            finally:
                self._explaining = False
                self._parameters = None
                self._staged = None

    def _eval_mode(self) -> Any:
        if self._explaining:
            return nullcontext()
        module = self._module
        return eval_mode(module, self._walk(module)[0])

    def sync_weights(self) -> None:
        """Nothing to do: the module itself (and its current weights) is used."""

    def _placement(self) -> tuple[torch.dtype, torch.device]:
        first = self._parameters[0] if self._parameters else next(self._module.parameters(), None)
        return (torch.float32, torch.device("cpu")) if first is None else (first.dtype, first.device)

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        """``obs`` in the dtype and on the device of the module's (first) parameter: rows of the
        staged batch are a slice of its device copy, anything else is copied there."""
        staged = self._staged_rows(obs)
        if staged is not None:
            return staged.detach()  # (a new tensor object: requires_grad_ on it leaves the staged one)
        dtype, device = self._placement()
        return torch.as_tensor(np.ascontiguousarray(obs), dtype=dtype, device=device)

    def _staged_rows(self, obs: np.ndarray) -> torch.Tensor | None:
        """The device copy of ``obs`` if ``obs`` is the staged batch or consecutive rows of it
        (a slice: the same memory, so the same numbers)."""
        if self._staged is None:
            return None
        batch, tensor = self._staged
        if obs is batch:
            return tensor
        if (
            not isinstance(obs, np.ndarray)
            or obs.dtype != batch.dtype
            or obs.ndim != batch.ndim
            or obs.ndim == 0
            or obs.strides != batch.strides
            or obs.shape[1:] != batch.shape[1:]
            or batch.strides[0] <= 0
        ):
            return None
        offset = obs.__array_interface__["data"][0] - batch.__array_interface__["data"][0]
        start, remainder = divmod(offset, batch.strides[0])
        if remainder or start < 0 or start + len(obs) > len(batch):
            return None
        return tensor[start : start + len(obs)]

    def finite_rows(self, obs: np.ndarray) -> np.ndarray:
        """Which rows of the batch explain() is given are finite, checked on the module's device
        after copying the batch there once for the whole call (numpy's check when it is too big
        to stage, or outside explaining())."""
        dtype, device = self._placement()
        # (Reading the free memory costs a file read: only batches over STAGE_ALWAYS_BYTES ask.)
        too_big = obs.nbytes > STAGE_ALWAYS_BYTES and obs.nbytes > free_memory(device) // 4
        if not self._explaining or too_big:
            return finite_rows(obs)
        with outside_inference_mode():
            tensor = torch.as_tensor(np.ascontiguousarray(obs), dtype=dtype, device=device)
        self._staged = (obs, tensor)
        if device.type == "cpu":  # the same memory: numpy's check costs less than torch's calls
            return finite_rows(obs)
        with torch.no_grad():
            # A row's sum is finite only if all its numbers are; rows whose sum is not (a
            # non-finite number, or an overflow) are checked number by number. (One wait for
            # the device in the common case: the N flags come back once.)
            finite = torch.isfinite(tensor.reshape(len(tensor), -1).sum(dim=1)).cpu().numpy()
            suspects = np.flatnonzero(~finite)
            if len(suspects):
                rows = tensor[torch.as_tensor(suspects, device=device)]
                finite[suspects] = torch.isfinite(rows.reshape(len(suspects), -1)).all(dim=1).cpu().numpy()
        return finite

    def pass_rows(self, rows: int, row_shape: tuple[int, ...], value: bool) -> int:
        """How many rows one pass takes (explain()'s default batch_size): all of them up to
        ONE_PASS_ROWS; beyond, as many as fit in free_memory() at the memory a row's forward and
        backward pass needs (measured once per module and path, see _bytes_per_row)."""
        if rows <= ONE_PASS_ROWS or self._state_structure is not None:
            return ONE_PASS_ROWS
        fitting = free_memory(self._placement()[1]) // self._bytes_per_row(tuple(row_shape), value)
        return int(max(ONE_PASS_ROWS, min(rows, fitting)))

    def _bytes_per_row(self, row_shape: tuple[int, ...], value: bool) -> int:
        """Memory a row's pass holds, measured: the tensors autograd saves for the backward pass
        (parameters cancel out between a 2-row and a 1-row pass of zeros), twice over for the
        temporaries it does not save, plus the row, its gradient and its staged copy."""
        key = (value, row_shape)
        if key not in self._row_bytes:
            dtype, device = self._placement()
            sizes = []
            for rows in (1, 2):
                saved = [0]

                def pack(tensor: torch.Tensor, saved: list = saved) -> torch.Tensor:
                    saved[0] += tensor.numel() * tensor.element_size()
                    return tensor

                inputs = torch.zeros((rows, *row_shape), dtype=dtype, device=device, requires_grad=True)
                with torch.inference_mode(False), self._eval_mode(), torch.enable_grad():
                    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                        out = self._measured_pass(inputs, value)
                sizes.append(saved[0] + out.numel() * out.element_size())
            row = int(np.prod(row_shape, dtype=np.int64)) * torch.finfo(dtype).bits // 8
            self._row_bytes[key] = max(2 * (sizes[1] - sizes[0]) + 3 * row, 1)
        return self._row_bytes[key]

    def _measured_pass(self, inputs: torch.Tensor, value: bool) -> torch.Tensor:
        """The pass whose memory _bytes_per_row measures (SAC's value at zero actions: the
        Q-networks' cost does not depend on the action's numbers)."""
        if not value:
            return self._run(inputs)
        if self._kind == "sac":
            zeros = np.zeros((len(inputs), *self._space.shape), np.float32)
            return torch_heads.sac_value(self._module, self._module_id, {Columns.OBS: inputs}, zeros)
        return self._values(inputs)

    def _batch(self, obs: torch.Tensor, states: tuple[np.ndarray, ...]) -> dict[str, Any]:
        return step_batch(self._state_structure, obs, states)

    def _run(self, obs: torch.Tensor, states: tuple[np.ndarray, ...] = ()) -> torch.Tensor:
        """The row of outputs the action targets read: the action-distribution inputs, or a
        Q-network's Q-values (one per action)."""
        if self._kind == "q":
            q = torch_heads.q_values(self._module, self._module_id, self._batch(obs, states))
            return q if self._state_structure is None else q[:, 0]
        if self._actor_path:  # RLlib's default PPO module: see actor_path()
            module = self._module
            return module.pi(module.encoder.actor_encoder(self._batch(obs, states))[ENCODER_OUT])
        outputs = getattr(self._module, self._forward_name)(self._batch(obs, states))
        if Columns.ACTION_DIST_INPUTS not in outputs:
            raise no_dist_inputs_error(self._module, self._module_id, self._forward_name, sorted(outputs))
        dist_inputs = outputs[Columns.ACTION_DIST_INPUTS]
        return dist_inputs if self._state_structure is None else dist_inputs[:, 0]

    def _output_keys(self) -> list[str]:
        """What the module's forward pass returns (one probe pass at zeros, for errors only)."""
        if self._probed_keys is None:
            from rllib_saliency.recurrent import initial_states

            module = self._module
            zeros = np.zeros((1, *module.observation_space.shape), np.float32)
            with torch.no_grad(), self._eval_mode():
                batch = self._batch(self._tensor(zeros), initial_states(module, 1))
                self._probed_keys = sorted(getattr(module, self._forward_name)(batch))
        return self._probed_keys

    def _dist_inputs(self, obs: torch.Tensor, states: tuple[np.ndarray, ...] = ()) -> torch.Tensor:
        dist_inputs = self._run(obs, states)
        if obs.requires_grad and not dist_inputs.requires_grad:
            raise TypeError(
                f"module {self._module_id!r}: its {self._forward_name} runs without autograd "
                "(e.g. under torch.no_grad()), so no input gradient exists. Implement the forward pass "
                "in _forward (RLlib's default _forward_inference calls it under no_grad)."
            )
        return dist_inputs

    def forward(self, obs: np.ndarray, states: tuple[np.ndarray, ...] = ()) -> ModelOutputs:
        with outside_inference_mode(), self._eval_mode():
            dist_inputs = self._kept_pass(obs, states)
            with grad_mode(False):
                greedy = self._greedy(dist_inputs)
        return ModelOutputs(host(dist_inputs, np.float32), host(greedy, self._space.dtype))

    def resolve_greedy(
        self, spec: TargetSpec, obs: np.ndarray, states: tuple[np.ndarray, ...]
    ) -> ResolvedTarget:
        """Target "action" (a ``greedy_logit`` spec) at ``obs``, as ``resolve_target`` resolves it
        after ``forward``, with the greedy columns found on the device from the kept pass: only
        the N columns come back to the host (not the outputs, nor the greedy actions), and the
        next ``evaluate`` gathers with their device copy. The same argmax of the same numbers
        (ties: the first column, as numpy's)."""
        with outside_inference_mode(), self._eval_mode():
            # (No grad-mode switch: the kept pass's outputs come detached, so argmax records nothing.)
            dist_inputs = self._kept_pass(obs, states)
            columns = dist_inputs[:, spec.column : spec.column + spec.size].argmax(dim=1)
            if spec.column:  # (a later sub-action of a MultiDiscrete action: its first logit's column)
                columns = columns + spec.column
        on_host = host(columns, np.int32)
        if self._kept is not None:
            self._kept.columns = (on_host, columns)
        return ResolvedTarget("dist_input", columns=on_host, states=states)

    def _kept_pass(self, obs: np.ndarray, states: tuple[np.ndarray, ...]) -> torch.Tensor:
        """The outputs at ``obs`` (detached), from a pass under autograd kept for the next
        ``evaluate`` (see the module docstring)."""
        check_state_count(self._module_id, self._num_states, states)
        self._kept = None
        with grad_mode(True):
            inputs = self._tensor(obs).requires_grad_(True)
            dist_inputs = self._run(inputs, states)
        if dist_inputs.requires_grad:  # (not for a module whose pass runs without autograd)
            self._kept = KeptPass(
                obs,
                inputs,
                dist_inputs,
                parameter_state(self._module, self._parameters),
                tuple(np.array(s, copy=True) for s in states) if states else (),
            )
        return dist_inputs.detach()

    def _greedy(self, dist_inputs: torch.Tensor) -> torch.Tensor:
        """The greedy action: argmax of a Q-network's Q-values (as RLlib's DQN acts), SAC's squashed
        mean (torch_heads.squashed_mean), else the distribution's deterministic action."""
        if self._kind == "q":
            return dist_inputs.argmax(dim=-1)
        if self._kind == "sac":
            return torch_heads.squashed_mean(self._module, dist_inputs)
        return greedy_action(self._module.get_inference_action_dist_cls(), dist_inputs)

    def _target(self, obs: torch.Tensor, target: ResolvedTarget) -> torch.Tensor:
        if target.kind == "value" and self._kind != "q":
            if self._kind == "sac":
                batch = self._batch(obs, target.states)
                return torch_heads.sac_value(self._module, self._module_id, batch, target.actions)
            return self._values(obs, target.states)
        return self._from_dist_inputs(self._dist_inputs(obs, target.states), target)

    def _values(self, obs: torch.Tensor, states: tuple[np.ndarray, ...] = ()) -> torch.Tensor:
        if self._kind == "q":  # max_a Q(s, a)
            return self._run(obs, states).max(dim=1).values
        if getattr(self._module, "inference_only", False) and not hasattr(self._module, "vf"):
            raise value_head_error(self._module, self._module_id, "is inference-only (no value head)")
        compute_values = getattr(self._module, "compute_values", None)
        if compute_values is None:
            keys = self._output_keys()
            if Columns.ACTION_DIST_INPUTS not in keys:  # no target at all: say so once, not per target
                raise no_dist_inputs_error(self._module, self._module_id, self._forward_name, keys)
            lacks = "does not implement RLlib's ValueFunctionAPI (compute_values)"
            raise value_head_error(self._module, self._module_id, lacks)
        try:
            return compute_values(self._batch(obs, states)).reshape(-1)
        except TypeError as error:  # an inference-only copy: its vf is None
            lacks = f"has no value head ({type(error).__name__}: {error})"
            raise value_head_error(self._module, self._module_id, lacks) from error

    def _from_dist_inputs(
        self,
        dist_inputs: torch.Tensor,
        target: ResolvedTarget,
        staged_columns: tuple[np.ndarray, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The target from the outputs; ``staged_columns``: resolve_greedy()'s columns and their
        device copy, used when ``target`` holds that very array."""
        if self._kind == "q":
            if target.kind == "value":  # max_a Q(s, a)
                return dist_inputs.max(dim=1).values
            if target.kind == "logp":
                raise torch_heads.logp_error(self._module, self._module_id)
            if target.kind == "advantage":
                refusal = torch_heads.advantage_error(self._module, self._module_id)
                if refusal is not None:
                    raise refusal
                columns = torch.as_tensor(target.columns, dtype=torch.long, device=dist_inputs.device)
                return torch_heads.advantage(dist_inputs, columns)
        elif target.kind == "advantage":
            what = (
                "is SAC's policy with twin Q-networks of (s, a), which have no advantage stream"
                if self._kind == "sac"
                else "is not a Q-network (no compute_q_values)"
            )
            raise UnsupportedTarget(
                f"target 'advantage': {describe_module(self._module, self._module_id)} {what}; "
                f"'advantage' is a dueling Q-network's A(s, a). It supports {POLICY_TARGETS}, and "
                "'value' (a value function, or SAC's twin Q-networks)."
            )
        if target.kind == "dist_input":
            if staged_columns is not None and staged_columns[0] is target.columns:
                columns = staged_columns[1]
            else:
                columns = torch.as_tensor(target.columns, dtype=torch.long, device=dist_inputs.device)
            return dist_inputs.gather(1, columns[:, None])[:, 0]
        if target.kind == "logp":
            dist = self._module.get_exploration_action_dist_cls().from_logits(dist_inputs)
            actions = torch.as_tensor(np.asarray(target.actions), device=dist_inputs.device)
            return dist.logp(actions).reshape(-1)
        raise ValueError(f"unknown target kind {target.kind!r}")

    def evaluate(
        self, obs: np.ndarray, target: ResolvedTarget, with_gradient: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        check_state_count(self._module_id, self._num_states, target.states)
        kept, self._kept = self._kept, None
        if kept is not None and (
            (target.kind == "value" and self._kind != "q")  # (a Q-network's value is max of the kept Q)
            or not kept.matches(obs, parameter_state(self._module, self._parameters), target.states)
        ):
            kept = None
        # (outside_inference_mode: a caller's torch.inference_mode() would make the input an
        # inference tensor, which autograd cannot differentiate.)
        with outside_inference_mode(), self._eval_mode(), grad_mode(with_gradient):
            if kept is not None:  # forward() ran this very pass already
                inputs = kept.inputs
                values = self._from_dist_inputs(kept.dist_inputs, target, kept.columns)
            else:
                inputs = self._tensor(obs)
                if with_gradient:
                    inputs.requires_grad_(True)
                values = self._target(inputs, target)
            gradient = None
            if with_gradient:
                if values.requires_grad:
                    # Each sample's target depends on its own row only: the gradient of the
                    # sum is every row's gradient, in one backward pass. allow_unused: a target
                    # that depends on parameters but not on the observation has gradient zero.
                    (gradient,) = torch.autograd.grad(values.sum(), inputs, allow_unused=True)
                if gradient is None:  # the target does not depend on the observation at all
                    gradient = torch.zeros_like(inputs)
        return host(values, np.float32), None if gradient is None else host(gradient, np.float32)


    # --- batched passes for path and noise methods: many points per row, few large passes ---------

    def integrated_gradients(
        self,
        obs: np.ndarray,
        target: ResolvedTarget,
        baseline: np.ndarray,
        alphas: np.ndarray,
        weights: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(x - b) * sum_k weights[k] * grad f(b + alphas[k] (x - b))`` and ``f(b)``, ``b`` the
        observation-shaped ``baseline``, with the points built on the device, as many per pass as
        pass_rows() allows. In float32 throughout (the method's numpy loop builds the points and
        sums in float64, whose passes over steps x N rows cost a CPU a quarter of the model's
        time): the loop's numbers within float32 rounding (tests/new_stack/test_torch_host_side)."""
        dtype, device = self._placement()
        with torch.inference_mode(False), torch.no_grad():
            x = self._tensor(obs).to(torch.float32)
            base = torch.as_tensor(baseline, dtype=torch.float32, device=device)
            difference = x - base

        def points(steps: slice) -> torch.Tensor:
            chosen = np.asarray(alphas)[steps]
            rows = torch.empty((len(chosen), *x.shape), dtype=dtype, device=device)
            for k, alpha in enumerate(chosen):
                torch.add(base, difference, alpha=float(alpha), out=rows[k])
            return rows.flatten(0, 1)

        integral = self._gradient_sum(obs, target, points, len(alphas), weights)
        with torch.inference_mode(False), torch.no_grad(), self._eval_mode():
            values = host(difference * integral.to(torch.float32), np.float32)
            f_baseline = host(self._at_baseline(base.to(dtype), len(x), target), np.float32)
        return values, f_baseline

    def _at_baseline(self, base: torch.Tensor, n: int, target: ResolvedTarget) -> torch.Tensor:
        """The target at the observation-shaped ``base`` for each of ``n`` rows (each row's own
        column or action). Where the model's outputs there are the same for every row (a stateless
        module; not SAC's value, a Q-value at each row's own action), one row goes through the model
        and the rows' targets are read from its outputs: on a GPU an N-row pass costs a launch
        sequence of its own (issue 20), on a CPU N rows of work."""
        if self._state_structure is not None or (target.kind == "value" and self._kind == "sac"):
            return self._target(base.expand(n, *base.shape).contiguous(), target)
        row = base[None]
        if target.kind == "value" and self._kind != "q":
            return self._values(row).expand(n)
        return self._from_dist_inputs(self._run(row).expand(n, -1), target)

    def smoothgrad(
        self,
        obs: np.ndarray,
        target: ResolvedTarget,
        sigma: np.ndarray,
        draw: Any,
        n_samples: int,
    ) -> np.ndarray:
        """The mean gradient at ``x + noise * sigma`` over ``n_samples`` draws, as many noisy copies
        per pass as pass_rows() allows. ``draw``: a function giving the next sample's numpy noise
        (in order: the same noise as the method's numpy loop; the draws cross to the device, the
        copies are made there), or ``(rows, seed)`` per block of rows: the noise is drawn on the
        module's device, one torch generator per block, sample after sample (never on the host).
        Summed in the module's dtype (the loop: float64), so the same numbers within float32 rounding."""
        dtype, device = self._placement()
        with torch.inference_mode(False), torch.no_grad():
            x = self._tensor(obs).to(torch.float32)
            scale = torch.as_tensor(sigma, dtype=torch.float32, device=device)
        generators = None
        if not callable(draw):
            generators = [(rows, torch.Generator(device=device).manual_seed(seed)) for rows, seed in draw]

        def noise() -> torch.Tensor:
            if generators is None:
                return torch.as_tensor(draw().astype(np.float32), device=device)
            parts = [
                torch.randn((rows, *x.shape[1:]), generator=generator, device=device)
                for rows, generator in generators
            ]
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        def points(samples: slice) -> torch.Tensor:
            count = len(range(n_samples)[samples])
            noisy = torch.empty((count, *x.shape), dtype=torch.float32, device=device)
            for k in range(count):
                torch.add(x, noise() * scale, out=noisy[k])
            return noisy.to(dtype).flatten(0, 1)

        total = self._gradient_sum(obs, target, points, n_samples, np.full(n_samples, 1.0 / n_samples))
        with torch.inference_mode(False), torch.no_grad():
            return host(total.to(torch.float32), np.float32)

    def _gradient_sum(
        self, obs: np.ndarray, target: ResolvedTarget, points: Any, count: int, weights: np.ndarray
    ) -> torch.Tensor:
        """``sum_k weights[k] * grad f(points_k)`` on the device, in the module's dtype, ``points(slice
        of k)`` giving those points' rows stacked point by point; one backward pass per group."""
        check_state_count(self._module_id, self._num_states, target.states)
        self._kept = None
        n = len(obs)
        per_pass = self.pass_rows(count * n, tuple(obs.shape[1:]), target.kind == "value")
        group = max(1, min(count, per_pass // n)) if count * n > ONE_PASS_ROWS else count
        dtype, device = self._placement()
        weights_t = torch.as_tensor(np.asarray(weights, np.float64), dtype=dtype, device=device)
        total = torch.zeros(obs.shape, dtype=dtype, device=device)
        rows = np.arange(n)
        with torch.inference_mode(False), self._eval_mode():
            for first in range(0, count, group):
                steps = slice(first, min(first + group, count))
                k = steps.stop - steps.start
                tiled = target if k == 1 else target.take(np.tile(rows, k))
                with torch.no_grad():
                    inputs = points(steps)
                with torch.enable_grad():
                    inputs.requires_grad_(True)
                    values = self._target(inputs, tiled)
                    gradient = None
                    if values.requires_grad:  # (see evaluate)
                        (gradient,) = torch.autograd.grad(values.sum(), inputs, allow_unused=True)
                if gradient is None:
                    continue  # the target does not depend on the observation: adds zero
                with torch.no_grad():  # the weighted sum over the group's points, as one matrix product
                    total += torch.tensordot(weights_t[steps], gradient.reshape(k, *obs.shape), dims=1)
        return total


def randomized_copy_backend(module: Any, module_id: str, rng: np.random.Generator) -> TorchBackend:
    """A backend on a deep copy of ``module`` with every parameter re-initialised (Glorot-uniform
    weights, zero biases), drawn from ``rng``: the module itself and torch's RNG are untouched."""
    import copy


    replica = copy.deepcopy(module)
    parameters = list(replica.parameters())
    values = reinitialised_weights([tuple(p.shape) for p in parameters], rng, channels_last=False)
    with torch.no_grad():
        for parameter, value in zip(parameters, values, strict=True):
            parameter.copy_(torch.as_tensor(value, dtype=parameter.dtype))
    return TorchBackend(replica, module_id, owned=True)
