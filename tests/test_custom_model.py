"""A custom TFModelV2 registered with ModelCatalog, not only RLlib's built-in nets."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from conftest import ppo_config, rollout_observations
from ray.rllib.models import ModelCatalog
from ray.rllib.models.tf.tf_modelv2 import TFModelV2

from rllib_saliency import explain


class SquaredFeaturesModel(TFModelV2):
    """logits = W·[x, x²] + b (a closed form to check gradients against); value = v·x."""

    def __init__(self, obs_space, action_space, num_outputs, model_config, name, value_bias=0.0):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        # A custom kwarg (from custom_model_config): the replica must be built with it too.
        self.value_bias = value_bias
        inputs = tf.keras.layers.Input(shape=obs_space.shape, name="observations")
        features = tf.keras.layers.Concatenate()([inputs, tf.keras.layers.Lambda(tf.square)(inputs)])
        logits = tf.keras.layers.Dense(num_outputs, name="logits")(features)
        value = tf.keras.layers.Dense(1, name="value")(inputs)
        self.base_model = tf.keras.Model(inputs, [logits, value])

    def forward(self, input_dict, state, seq_lens):
        logits, self._value = self.base_model(input_dict["obs_flat"])
        return logits, state

    def value_function(self):
        return tf.reshape(self._value, [-1]) + self.value_bias


def model_weight(policy, suffix: str) -> np.ndarray:
    (variable,) = [v for v in policy.model.variables() if v.name.split(":")[0].endswith(suffix)]
    if policy.framework == "tf":
        return policy.get_session().run(variable)
    return variable.numpy()


def test_custom_model_gradient_has_the_closed_form(ray_cluster):
    ModelCatalog.register_custom_model("squared_features", SquaredFeaturesModel)
    config = ppo_config(
        lr=0.0, model={"custom_model": "squared_features", "custom_model_config": {"value_bias": 3.5}}
    )
    algo = config.build_algo()
    try:
        algo.train()
        policy = algo.get_policy()
        obs = rollout_observations(algo, n=32)
        kernel = model_weight(policy, "logits/kernel")
        value_kernel = model_weight(policy, "value/kernel")
        d = obs.shape[1]
        for k in range(2):
            # d/dx (W_lin·x + W_sq·x²) = W_lin + 2·W_sq·x
            expected = kernel[:d, k] + 2 * kernel[d:, k] * obs
            np.testing.assert_allclose(
                explain(policy, obs, "gradient", f"action_{k}").values, expected, atol=1e-5
            )
        np.testing.assert_allclose(
            explain(policy, obs, "gradient", "value").values,
            np.broadcast_to(value_kernel[:, 0], obs.shape),
            atol=1e-6,
        )
        # The kwarg reached the replica: the value matches the policy's own, bias included.
        _, _, extra = policy.compute_actions(obs, explore=False)
        values = explain(policy, obs, "gradient", "value").target_values
        np.testing.assert_allclose(values, extra["vf_preds"], atol=1e-5)
        # IG of the linear value head is exact: (x - 0) * v, delta 0.
        ig = explain(policy, obs, "integrated_gradients", "value")
        np.testing.assert_allclose(ig.values, obs * value_kernel[:, 0], atol=1e-5)
        assert np.abs(ig.delta).max() < 1e-5
    finally:
        algo.stop()
