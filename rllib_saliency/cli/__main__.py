"""``python -m rllib_saliency.cli``: the same as the ``rllib-saliency`` console script."""

from rllib_saliency.cli.main import console_script

console_script()
