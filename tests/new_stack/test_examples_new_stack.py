"""The new-stack-only examples (DQN, SAC) stay runnable (short runs); the examples both stacks
share are contracts (tests/contracts/)."""

from __future__ import annotations

import pytest
from example_runs import run_example

pytestmark = pytest.mark.slow

@pytest.mark.parametrize(
    ("example", "targets"),
    [
        ("dqn_cartpole.py", ("action", "value", "advantage")),
        ("sac_pendulum.py", ("action_0", "value", "logp")),
    ],
)
def test_q_learning_and_sac_examples(tmp_path, example, targets):
    """Two short iterations: the table of saliency per iteration, the TensorBoard command, and the
    events of every target in the trial dir it names."""
    import os

    from tb_events import load

    out = run_example(
        example, "--iterations", "2", "--steps-per-iteration", "100", "--storage", str(tmp_path), cwd=tmp_path
    )
    lines = out.splitlines()
    command = next(line.strip() for line in lines[lines.index("View them with:") + 1 :] if "--logdir" in line)
    executable, _, logdir = command.partition(" --logdir ")
    assert os.path.isabs(executable) and os.path.exists(executable)
    trial_dir = out.split("one run): ")[1].splitlines()[0].strip()
    assert os.path.dirname(trial_dir) == logdir
    tags = load(trial_dir).Tags()["scalars"]
    for target in targets:
        prefix = f"saliency/default_policy/{target}/gradient/mean_abs/"
        assert any(tag.startswith(prefix) for tag in tags), target
    assert any(line.startswith("Checkpoint: ") for line in lines)
