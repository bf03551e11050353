"""README's Python code blocks run as written: each in its own subprocess, so a snippet that stops
working (or a statement that stops being true of the API) fails ``make test``.

Blocks fenced as ```python are run; signatures and shell lines are fenced otherwise. A block
that trains gets a short training: the prelude shrinks the batch of every algorithm built
(``AlgorithmConfig.build_algo``) to 256 steps, sampled by the driver's own env runner, and
changes nothing else. Run once, in the tf2 process
(each block is its own process whatever the suite's framework).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FRAMEWORK

README = Path(__file__).resolve().parent.parent / "README.md"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(FRAMEWORK != "tf2", reason="runs once, in the tf2 process"),
]

# Runs before each block, after the block's own first import (rllib_saliency must come first).
PRELUDE = textwrap.dedent(
    """
    import rllib_saliency  # as every block's first line: before ray and the frameworks
    import ray
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    _build_algo = AlgorithmConfig.build_algo

    def _short_build_algo(self, *args, **kwargs):
        self.training(train_batch_size=256, minibatch_size=128, num_epochs=1)
        self.env_runners(num_env_runners=0)  # no runner processes to start for 256 steps
        return _build_algo(self, *args, **kwargs)

    AlgorithmConfig.build_algo = _short_build_algo
    """
)


def python_blocks() -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block in README."""
    text = README.read_text()
    return [
        (text[: match.start()].count("\n") + 2, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    ]


BLOCKS = python_blocks()


def test_readme_has_the_blocks_this_test_runs():
    assert len(BLOCKS) >= 5, BLOCKS  # usage (both stacks), callbacks, trust, maximize


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path):
    assert code.lstrip().startswith("import rllib_saliency"), (
        f"README.md:{line}: a block starts with `import rllib_saliency` (the import order README asks for)"
    )
    script = tmp_path / "block.py"
    script.write_text(PRELUDE + "\n# --- README block ---\n" + code + "\nray.shutdown()\n")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"README.md:{line}:\n{code}\n--- stderr ---\n{result.stderr[-4000:]}"
