"""``python -m rllib_saliency.cli``: the same as the ``rllib-saliency`` console script."""

import sys

from rllib_saliency.cli.main import main

sys.exit(main())
