"""``rllib-saliency``: offline saliency and activation maximization from an RLlib checkpoint.

Two subcommands, ``explain`` and ``maximize``. Each loads a checkpoint: a
new-API-stack one (torch RLModules; an algorithm's, from ``algo.save_to_path()``,
or an RLModule's, from ``rl_module.save_to_path()``) or an old-API-stack TensorFlow
one (an algorithm's, from ``algo.save()``, or a policy's, from
``policy.export_checkpoint()``), gets observations (by rolling out the trained
policy greedily in its own environment, new-stack ones through the checkpoint's
connector pipelines, or from a ``.npy`` file), computes, and writes TensorBoard
events (the training callback's tag scheme), PNG files and an ``.npz`` into ``--out``.

Errors a user can fix (a wrong path, an unsupported checkpoint, an unknown policy
id, an environment or model registered in a module that was not imported) are
printed as one message with exit code 1, without a traceback.

Modules: :mod:`~rllib_saliency.cli.main` (parser, ``main()``, the driver),
:mod:`~rllib_saliency.cli.arguments` (options both commands take),
:mod:`~rllib_saliency.cli.observations` (``--obs`` files),
:mod:`~rllib_saliency.cli.explain`, :mod:`~rllib_saliency.cli.maximize` and
:mod:`~rllib_saliency.cli.movie` (one command each), :mod:`~rllib_saliency.cli.common` (what the
commands share), :mod:`~rllib_saliency.cli.errors` (:class:`CLIError` and messages). Reading
checkpoints, loading policies/modules and rolling them out is each stack's own
(:mod:`rllib_saliency.stacks`: ``stacks/old/``, ``stacks/new/``); the commands ask the
checkpoint's stack package and never branch on the stack.
"""

from rllib_saliency.cli.errors import PROG, CLIError
from rllib_saliency.cli.main import build_parser, console_script, main
from rllib_saliency.stacks import inspect_checkpoint
from rllib_saliency.stacks.checkpoint import Checkpoint
from rllib_saliency.stacks.old.checkpoint import build_algorithm, load_policy

__all__ = [
    "PROG",
    "CLIError",
    "Checkpoint",
    "build_algorithm",
    "build_parser",
    "console_script",
    "inspect_checkpoint",
    "load_policy",
    "main",
]
