"""The arguments both commands take: the checkpoint, where observations come from, outputs."""

from __future__ import annotations

import argparse

from rllib_saliency.cli.errors import IMPORT_HELP

DEFAULT_EPISODES = 5


def add_common_arguments(parser: argparse.ArgumentParser, needs_data: bool) -> None:
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="a checkpoint directory. New API stack (torch RLModules): an algorithm's "
        "(algo.save_to_path(...) or algo.save()), explained with the learner's full module and rolled "
        "out through the checkpoint's connectors; or an RLModule's (rl_module.save_to_path(...)), "
        "which holds no environment: it needs --obs FILE. Old API stack, framework 'tf' or 'tf2': an "
        "algorithm's (algo.save(...)) or a policy's (policy.export_checkpoint(...))",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="where files and TensorBoard events go")
    parser.add_argument(
        "--policy",
        metavar="ID",
        help="the policy to analyse; new API stack: the RLModule's module id (default: "
        "'default_policy', or the only one); an unknown id lists the available ones",
    )
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--episodes",
        type=int,
        metavar="N",
        help=f"roll out N whole episodes with the trained policy (explore=False) in its own environment "
        "(new API stack: through the checkpoint's env-to-module and module-to-env connectors; "
        "the observations recorded are the module's inputs; multi-agent: every agent acts with the "
        "module policy_mapping_fn maps it to, the rows of the --policy module are recorded) "
        f"(default {DEFAULT_EPISODES}"
        + ("" if needs_data else "; 0: no observations, only with --init random")
        + ")",
    )
    data.add_argument(
        "--obs",
        metavar="FILE",
        help="use these observations instead: a .npy array (N, *obs_shape) of preprocessed "
        "observations as in the policy's sample batches (new API stack: as the module takes them, "
        "after the env-to-module connectors), or an .npz with an 'observations' array (e.g. one "
        "this command wrote); needed for RLModule checkpoints",
    )
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP
    )
    parser.add_argument(
        "--feature-names",
        metavar="A,B,...",
        help="comma-separated names of the observation features (default: the feature_names the "
        "checkpoint's SaliencyCallbacks were configured with, else f0, f1, ... or Dict key paths)",
    )
    parser.add_argument(
        "--step",
        type=int,
        help="TensorBoard step of the events (default: the checkpoint's sampled env steps, so the "
        "events line up with the training curves)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the rollouts' environment, the histogram sample and the starting points (default 0)",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=2,
        help="accepted for scripts written for earlier versions; unused: the command starts no Ray "
        "instance (both stacks load and roll out in this process) (default 2)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="show Ray's and RLlib's log messages")
    parser.add_argument("--debug", action="store_true", help="show a traceback for every error")
