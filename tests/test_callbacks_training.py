"""SaliencyCallbacks in real PPO training: event files read back, values checked against explain()."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ppo_config
from tb_events import decode_png, load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.callbacks import _saliency_callbacks

pytestmark = pytest.mark.slow

METHODS = ("gradient", "integrated_gradients")
TARGETS = ("action", "value")


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


@pytest.mark.parametrize("num_env_runners", [0, 2])
def test_every_documented_tag_at_every_step(ray_cluster, tmp_path, num_env_runners):
    config = ppo_config(num_env_runners=num_env_runners).callbacks(
        SaliencyCallbacks.configure(
            every=1, methods=METHODS, targets=TARGETS, image_every=1, logdir=str(tmp_path)
        )
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(3)]
        steps = [r["timesteps_total"] for r in results]
        assert len(set(steps)) == 3
        events = load(str(tmp_path), algo)
        tags = events.Tags()
        for target in TARGETS:
            for method in METHODS:
                prefix = f"saliency/default_policy/{target}/{method}"
                for feature in range(4):
                    tag = f"{prefix}/mean_abs/f{feature}"
                    assert sorted(scalars(events, tag)) == steps, tag
                    # The same numbers reach the training result, for every Tune logger.
                    for result in results:
                        in_result = float(
                            result["saliency"][f"default_policy/{target}/{method}/mean_abs/f{feature}"]
                        )
                        assert scalars(events, tag)[result["timesteps_total"]] == pytest.approx(
                            in_result, rel=1e-6
                        )
                assert [e.step for e in events.Histograms(f"{prefix}/distribution")] == steps
                for kind in ("importance", "evolution"):
                    images = events.Images(f"{prefix}/{kind}")
                    assert [e.step for e in images] == steps
                    pixels = decode_png(images[-1])
                    assert pixels.shape == (images[-1].height, images[-1].width, 3)
                    assert pixels.shape[0] > 100 and pixels.shape[1] > 300 and pixels.std() > 10  # not blank
                # The last step's values are explain() on the observations the runners sampled.
                last = [scalars(events, f"{prefix}/mean_abs/f{j}")[steps[-1]] for j in range(4)]
                np.testing.assert_allclose(
                    last, expected_mean_abs(algo, "default_policy", target, method), rtol=1e-4
                )
            # Trust metrics beside every map.
            trust = f"saliency/default_policy/{target}"
            completeness = scalars(events, f"{trust}/integrated_gradients/trust/completeness_error")
            assert sorted(completeness) == steps and max(completeness.values()) < 0.01
            assert min(completeness.values()) >= 0  # documented range [0, 2]
            for method in METHODS:
                for metric in ("deletion_auc", "deletion_auc_random"):
                    deletion = scalars(events, f"{trust}/{method}/trust/{metric}")
                    assert sorted(deletion) == steps and all(0 <= v <= 1 for v in deletion.values())
            agreement = scalars(events, f"{trust}/agreement/gradient__integrated_gradients")
            assert sorted(agreement) == steps and all(-1 <= v <= 1 for v in agreement.values())
        assert "saliency/config" in tags["tensors"]
        assert "errors" not in results[-1]["saliency"]  # includes the weight-sync check on remote runners
    finally:
        algo.stop()


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


def test_box_actions_log_every_action_dimension_and_feature_names(ray_cluster, tmp_path):
    names = ["cos_theta", "sin_theta", "theta_dot"]
    config = ppo_config("Pendulum-v1").callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",),
            targets=("action", "logp"),
            feature_names=names,
            trust_metrics=("randomization",),
            logdir=str(tmp_path),
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        events = load(str(tmp_path), algo)
        scalar_tags = set(events.Tags()["scalars"])
        for target in ("action_0", "logp"):
            for name in names:
                assert f"saliency/default_policy/{target}/gradient/mean_abs/{name}" in scalar_tags
        assert "errors" not in result["saliency"]
        randomization = scalars(
            events, "saliency/default_policy/action_0/gradient/trust/randomization_rank_corr"
        )
        assert -1 <= randomization[result["timesteps_total"]] < 0.95
        assert not [t for t in scalar_tags if "deletion_auc" in t]  # only the metrics asked for
        # logp explains the log-probability of the actions the runner actually took.
        obs, actions = explained_samples(algo)[0]["default_policy"]
        attribution = explain(algo.get_policy(), obs, "gradient", "logp", actions=actions)
        logged = [
            scalars(events, f"saliency/default_policy/logp/gradient/mean_abs/{n}")[result["timesteps_total"]]
            for n in names
        ]
        np.testing.assert_allclose(logged, np.abs(attribution.values).mean(0), rtol=1e-4)
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
