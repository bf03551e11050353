"""Every documented tag at every step, on this process's stack, with 0 and 2 env runners: the
maps' scalars (the same numbers in the training result), histograms, images, trust metrics, the
config; the last step's values are ``explain()`` with the current model on the rows the callback
explained. Written once for both stacks (it was a twin in tests/test_callbacks_training.py and
tests/new_stack/test_callbacks_new_stack.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import STACK
from tb_events import decode_png, load, scalars, text

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.api import current_model

pytestmark = pytest.mark.slow

METHODS = ("gradient", "integrated_gradients")
TARGETS = ("action", "value")


def expected_mean_abs(algo, model_id: str, target: str, method: str) -> np.ndarray:
    """explain() with the current model on the rows the callback explained last, merged over the
    places that explained them (old stack: each env runner's reservoir)."""
    total, count = 0.0, 0
    for obs, _ in STACK.explained(algo, model_id):
        attribution = explain(current_model(algo, model_id), obs, method, target)
        total = total + np.abs(attribution.values).sum(axis=0)
        count += len(obs)
    return total / count


@pytest.mark.parametrize("num_env_runners", [0, 2])
def test_every_documented_tag_at_every_step(ray_cluster, tmp_path, num_env_runners):
    config = STACK.config(num_env_runners=num_env_runners).callbacks(
        SaliencyCallbacks.configure(
            every=1, methods=METHODS, targets=TARGETS, image_every=1, logdir=str(tmp_path)
        )
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        steps = [STACK.step(r) for r in results]
        assert len(set(steps)) == 2
        if STACK.name == "new":
            # New-stack results have no timesteps_total: the step is the iteration, as in Tune's logger.
            assert steps == [1, 2] and "timesteps_total" not in results[-1]
        events = load(str(tmp_path), algo)
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
                        assert scalars(events, tag)[STACK.step(result)] == pytest.approx(in_result, rel=1e-6)
                assert [e.step for e in events.Histograms(f"{prefix}/distribution")] == steps
                for kind in ("importance", "evolution"):
                    images = events.Images(f"{prefix}/{kind}")
                    assert [e.step for e in images] == steps
                    pixels = decode_png(images[-1])
                    assert pixels.shape == (images[-1].height, images[-1].width, 3)
                    assert pixels.shape[0] > 100 and pixels.shape[1] > 300 and pixels.std() > 10  # not blank
                # The last step's values are explain() on the observations the callback explained.
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
        assert "saliency/config" in events.Tags()["tensors"]
        # What each chart's number is, for this policy's model (the charts' subtitles say the same).
        config = text(events, "saliency/config")
        assert "- default_policy: action = the greedy action's logit" in config
        assert "- default_policy: value = V(s), the value function's estimate" in config
        assert "Q-network" not in config and "SAC" not in config
        assert "errors" not in results[-1]["saliency"]  # includes the weight-sync check on remote runners
        # Every sampling env runner's reservoir was explained: num_samples rows each.
        explained = STACK.explained(algo)
        assert sum(len(obs) for obs, _ in explained) == 64 * max(1, num_env_runners)
        if num_env_runners:
            assert algo.env_runner_group.num_healthy_remote_workers() == num_env_runners
    finally:
        algo.stop()
