"""What the Tune examples share: train one trial, print a table of saliency per iteration, and
print where the TensorBoard logs are and what to run next. Each example keeps its own config
(the part to read); this is only the running and printing."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import ray
from ray import tune


def fit(trainable: Any, config: Any, name: str, storage: str, iterations: int) -> Any:
    """One Tune trial of ``trainable`` (the class, not its name: for a string Tune registers every
    RLlib algorithm, and importing DreamerV3 builds a debug CartPole whose float64 Box makes
    gymnasium warn), saving a checkpoint at the end. Returns its ``Result``."""
    tuner = tune.Tuner(
        trainable,
        param_space=config,
        run_config=tune.RunConfig(
            name=name,
            storage_path=os.path.abspath(storage),
            stop={"training_iteration": iterations},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
            verbose=0,
        ),
    )
    result = tuner.fit()[0]
    if result.error:
        raise SystemExit(f"training failed: {result.error}")
    return result


def print_table(result: Any, columns: dict[str, str], return_width: int = 7) -> None:
    """Iteration, mean return and the given result columns (header -> column). Iterations where
    the callback did not compute (``every=None`` spaces computations within ``max_overhead``)
    show "-"."""
    history = result.metrics_dataframe
    widths = {header: max(len(header), 10) for header in columns}
    headers = "  ".join(f"{header:>{width}}" for header, width in widths.items())
    print(f"{'iteration':>9}  {'return':>{return_width}}  {headers}")
    for _, row in history.iterrows():
        cells = []
        for header, column in columns.items():
            value = row.get(column, math.nan)
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            text = "-" if missing else f"{value:.3f}"
            cells.append(f"{text:>{widths[header]}}")
        print(
            f"{row['training_iteration']:9d}  {row['env_runners/episode_return_mean']:{return_width}.1f}  "
            + "  ".join(cells)
        )


def finish(result: Any) -> None:
    """Shut Ray down, then print the TensorBoard command and the CLI's next step."""
    ray.shutdown()
    print_next_steps(result.path, result.checkpoint.path if result.checkpoint is not None else None)


def print_next_steps(trial_dir: str, checkpoint: str | None) -> None:
    """The TensorBoard command (absolute paths; --logdir the experiment dir, so the trial is a
    named run) and the next step: the CLI on the saved checkpoint, its events beside the trial's."""
    bin_dir = os.path.dirname(os.path.abspath(sys.executable))
    experiment_dir = os.path.dirname(trial_dir)
    print(f"\nTensorBoard logs (RLlib's curves and saliency, one run): {trial_dir}")
    print("View them with:")
    print(f"\n  {os.path.join(bin_dir, 'tensorboard')} --logdir {experiment_dir}\n")
    print("(Tune's TensorBoard hint printed earlier points at driver_artifacts: no saliency there.)")
    if checkpoint is None:
        return
    print(f"\nCheckpoint: {checkpoint}")
    print("Next: explain the trained policy on fresh greedy episodes (events land in the same logdir):")
    print(
        f"\n  {os.path.join(bin_dir, 'rllib-saliency')} explain {checkpoint} "
        f"--out {os.path.join(experiment_dir, 'explain')}\n"
    )
