"""SaliencyCallbacks in real PPO training: event files read back, values checked against explain()."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ppo_config
from tb_events import decode_png, load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.callbacks import _saliency_callbacks

pytestmark = pytest.mark.slow


def explained_samples(algo) -> list[dict]:
    """The observations each sampling env runner explained last, per policy."""
    group = algo.env_runner_group

    def fetch(worker):
        return _saliency_callbacks(worker.callbacks).last_explained

    if group.num_remote_env_runners() > 0:
        return group.foreach_env_runner(fetch, local_env_runner=False)
    return [fetch(algo.env_runner)]


def expected_mean_abs(algo, policy_id: str, target: str, method: str) -> np.ndarray:
    """explain() on the same observations with the same (current) weights, merged over runners."""
    total, count = 0.0, 0
    for samples in explained_samples(algo):
        obs, actions = samples[policy_id]
        attribution = explain(algo.get_policy(policy_id), obs, method, target)
        total = total + np.abs(attribution.values).sum(axis=0)
        count += len(obs)
    return total / count


def test_multi_agent_policies_are_logged_separately(ray_cluster, tmp_path):
    from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole

    config = (
        ppo_config()
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .multi_agent(policies={"p0", "p1"}, policy_mapping_fn=lambda agent_id, *a, **k: f"p{agent_id}")
        .callbacks(
            SaliencyCallbacks.configure(
                every=1, methods=("gradient",), targets=("value",), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        events = load(str(tmp_path), algo)
        step = result["timesteps_total"]
        values = {}
        for policy_id in ("p0", "p1"):
            logged = [
                scalars(events, f"saliency/{policy_id}/value/gradient/mean_abs/f{j}")[step] for j in range(4)
            ]
            np.testing.assert_allclose(
                logged, expected_mean_abs(algo, policy_id, "value", "gradient"), rtol=1e-4
            )
            values[policy_id] = np.array(logged)
        # Two independently initialised policies: their maps must differ.
        assert not np.allclose(values["p0"], values["p1"], rtol=1e-3)
    finally:
        algo.stop()


def test_activation_maximization_in_training(ray_cluster, tmp_path):
    config = ppo_config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",),
            targets=("action",),
            trust_metrics=(),
            activation_maximization_every=2,
            activation_maximization_options={"steps": 30, "n_starts": 4},
            logdir=str(tmp_path),
        )
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(3)]
        events = load(str(tmp_path), algo)
        steps = [r["timesteps_total"] for r in results]
        for k in (0, 1):
            tag = f"saliency/default_policy/actmax/action_{k}"
            logged = scalars(events, f"{tag}/value")
            assert sorted(logged) == [steps[0], steps[2]]  # the 1st computation, then every 2nd
            assert float(results[2]["saliency"][f"default_policy/actmax/action_{k}/value"]) == pytest.approx(
                logged[steps[2]], rel=1e-6
            )
            image = events.Images(f"{tag}/input")[-1]
            assert decode_png(image).std() > 10
        # The optimum beats its starting points: the runner's first n_starts sampled observations.
        obs, _ = explained_samples(algo)[0]["default_policy"]
        sampled_best = explain(algo.get_policy(), obs[:4], "gradient", "action_1").target_values.max()
        assert logged[steps[2]] >= sampled_best - 1e-4
        assert "errors" not in results[-1]["saliency"]
    finally:
        algo.stop()
