"""Run explain() on an eager ("tf2") PPO policy loaded with given model weights.

Used by test_graph_eager_agreement.py in a separate process: one process cannot
build both a graph-mode and an eager RLlib algorithm.
Usage: python eager_replay.py IN.npz OUT.npz ENV
"""

from __future__ import annotations

import os
import sys

os.environ["RLLIB_SALIENCY_TEST_FRAMEWORK"] = "tf2"

import numpy as np  # noqa: E402
import ray  # noqa: E402
from conftest import ppo_config  # noqa: E402

from rllib_saliency import explain  # noqa: E402

CASES = [
    (m, t) for m in ("gradient", "integrated_gradients", "occlusion") for t in ("action", "logp", "value")
]


def main(source: str, destination: str, env: str) -> None:
    data = np.load(source)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    algo = ppo_config(env).build_algo()
    policy = algo.get_policy()
    variables = policy.model.variables()
    for index, variable in enumerate(variables):
        variable.assign(data[f"w{index}"])
    results = {f"{m}/{t}": explain(policy, data["obs"], m, t).values for m, t in CASES}
    results.update({f"{m}/{t}/target": explain(policy, data["obs"], m, t).target_values for m, t in CASES})
    np.savez(destination, **results)
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
