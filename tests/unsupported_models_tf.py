"""The old stack's model the engine cannot explain (see unsupported_models.py)."""

from __future__ import annotations

import tensorflow as tf
from ray.rllib.models.tf.tf_modelv2 import TFModelV2
from ray.rllib.policy.view_requirement import ViewRequirement


class FrameStackingModel(TFModelV2):
    """Reads the last 3 observations through a trajectory view ("prev_n_obs")."""

    def __init__(self, obs_space, action_space, num_outputs, model_config, name):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        self.view_requirements["prev_n_obs"] = ViewRequirement(data_col="obs", shift="-2:0", space=obs_space)
        inputs = tf.keras.layers.Input(shape=(3 * obs_space.shape[0],))
        logits = tf.keras.layers.Dense(num_outputs)(inputs)
        value = tf.keras.layers.Dense(1)(inputs)
        self.base_model = tf.keras.Model(inputs, [logits, value])

    def forward(self, input_dict, state, seq_lens):
        stacked = tf.reshape(tf.cast(input_dict["prev_n_obs"], tf.float32), [-1, 3 * self.obs_space.shape[0]])
        logits, self._value = self.base_model(stacked)
        return logits, state

    def value_function(self):
        return tf.reshape(self._value, [-1])
