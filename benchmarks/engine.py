"""Engine benchmark: per-observation cost of input gradients, ours vs. the usual workaround.

For graph ("tf") and eager ("tf2") PPO CartPole policies, each in its own
process (TensorFlow cannot host both kinds of RLlib policy in one), measures:
  (a) the per-sample GradientTape approach users reach for: a tape around
      ``policy.model`` for one observation, evaluated in the policy's session
      (graph) or eagerly (eager);
  (b) ``explain(method="gradient")`` on batches of 256 and 4096;
  (c) one forward pass of the same batch through the policy
      (``compute_actions(explore=False)``);
  (d) the per-call cost of ``explain()`` against the bare minimum for the same
      numbers (logit 0 and its input gradient), 200 alternating calls, medians, at
      N=64 and N=256: eager against a bare ``tf.function`` around the policy's
      model; graph against a bare gradient op built once in the benchmark's own
      scratch graph (the same model rebuilt by RLlib's catalog, the policy's
      weights loaded) and run with ``session.run`` (never the policy's graph).
Prints a table and writes benchmarks/results/engine.json. Ratios, not absolute
times, are the result: they are measured in one run on one machine.

Usage: python benchmarks/engine.py [--tape-samples N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def best_of(fn, repeats: int = 5) -> float:
    fn()  # warm-up: build and trace once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def alternating_medians(first, second, calls: int = 200) -> tuple[float, float]:
    """Median seconds of ``first`` and of ``second``, called in turn (so load hits both)."""
    for _ in range(20):
        first()
        second()
    a, b = [], []
    for _ in range(calls):
        start = time.perf_counter()
        first()
        a.append(time.perf_counter() - start)
        start = time.perf_counter()
        second()
        b.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def bare_gradient(policy, framework: str):
    """``f(batch) -> (logit 0, its input gradient)`` with nothing around it."""
    import tensorflow as tf

    if framework == "tf2":
        model = policy.model

        @tf.function(input_signature=[tf.TensorSpec((None, *policy.observation_space.shape), tf.float32)])
        def logit_and_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                logit = model({"obs": x})[0][:, 0]
            return logit, tape.gradient(logit, x)

        return lambda batch: [t.numpy() for t in logit_and_gradient(tf.convert_to_tensor(batch))]
    from ray.rllib.models import ModelCatalog

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, (None, *policy.observation_space.shape))
        model = ModelCatalog.get_model_v2(
            policy.observation_space, policy.action_space, policy.model.num_outputs,
            policy.config["model"], framework="tf", name="scratch",
        )
        logit = model({"obs": x, "is_training": tf.constant(False)}, [], None)[0][:, 0]
        gradient = tf.gradients(logit, x)[0]
        session = tf1.Session(graph=graph)
        session.run(tf1.variables_initializer(model.variables()))
        weights = policy.get_session().run(policy.model.variables())
        for variable, value in zip(model.variables(), weights, strict=True):
            variable.load(value, session)
    return lambda batch: session.run([logit, gradient], {x: batch})


def measure(framework: str, tape_samples: int) -> dict:
    # isort: off
    import rllib_saliency  # noqa: F401  (first: selects tf-keras before TensorFlow loads Keras)

    # isort: on
    import numpy as np
    import ray
    import tensorflow as tf
    from _cartpole import cartpole_ppo

    from rllib_saliency import explain

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    config = cartpole_ppo(framework, train_batch_size=256, minibatch_size=128, num_epochs=1)
    algo = config.build_algo()
    algo.train()
    policy = algo.get_policy()
    rng = np.random.default_rng(0)
    obs = {n: rng.normal(size=(n, 4)).astype(np.float32) for n in (256, 4096)}

    def tape_one(x: np.ndarray) -> np.ndarray:
        x = tf.constant(x[None])
        with tf.GradientTape() as tape:
            tape.watch(x)
            out, _ = policy.model({"obs": x})
            target = out[0, 0]
        gradient = tape.gradient(target, x)
        return gradient.eval(session=policy.get_session()) if framework == "tf" else gradient.numpy()

    graph_ops = None
    tape_times = []
    if framework == "tf":
        graph = policy.get_session().graph
        ops_before = len(graph.get_operations())
        with graph.as_default():
            for x in obs[256][:tape_samples]:
                start = time.perf_counter()
                tape_one(x)
                tape_times.append(time.perf_counter() - start)
        graph_ops = {"tape_ops_added_per_call": (len(graph.get_operations()) - ops_before) / tape_samples}
        ops_before = len(graph.get_operations())
    else:
        for x in obs[256][:tape_samples]:
            start = time.perf_counter()
            tape_one(x)
            tape_times.append(time.perf_counter() - start)
    tenth = max(1, tape_samples // 10)
    row = {
        "framework": framework,
        "tape_samples": tape_samples,
        "tape_s_per_obs": float(np.mean(tape_times)),
        "tape_s_per_obs_first_10pct": float(np.mean(tape_times[:tenth])),
        "tape_s_per_obs_last_10pct": float(np.mean(tape_times[-tenth:])),
    }
    for n, batch in obs.items():
        gradient = best_of(lambda b=batch: explain(policy, b, "gradient", "action_0", batch_size=4096))
        forward = best_of(lambda b=batch: policy.compute_actions(b, explore=False))
        row[f"explain_s_per_obs_{n}"] = gradient / n
        row[f"forward_s_per_obs_{n}"] = forward / n
        row[f"speedup_vs_tape_{n}"] = row["tape_s_per_obs"] / (gradient / n)
        row[f"gradient_over_forward_{n}"] = gradient / forward
    bare = bare_gradient(policy, framework)
    for n in (64, 256):
        batch = obs[256][:n]
        ours, reference = bare(batch)[1], explain(policy, batch, "gradient", "action_0").values
        assert np.allclose(ours, reference, atol=1e-5), "the bare reference computes something else"
        ours_s, bare_s = alternating_medians(
            lambda b=batch: explain(policy, b, "gradient", "action_0"), lambda b=batch: bare(b)
        )
        row[f"explain_over_bare_{n}"] = ours_s / bare_s
    if framework == "tf":
        for _ in range(100):
            explain(policy, obs[256], "gradient", "action_0")
        graph_ops["explain_ops_added_over_100_calls"] = len(graph.get_operations()) - ops_before
        row.update(graph_ops)
    algo.stop()
    ray.shutdown()
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| mode | per-sample tape (µs/obs) | explain, N=256 (µs/obs) | explain, N=4096 (µs/obs) "
        "| speed-up vs tape (256 / 4096) | gradient ÷ forward (256 / 4096) "
        "| explain ÷ bare gradient, per call (64 / 256) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mode = "graph (tf)" if r["framework"] == "tf" else "eager (tf2)"
        lines.append(
            f"| {mode} | {r['tape_s_per_obs'] * 1e6:,.0f} | {r['explain_s_per_obs_256'] * 1e6:.2f} "
            f"| {r['explain_s_per_obs_4096'] * 1e6:.2f} "
            f"| {r['speedup_vs_tape_256']:,.0f}× / {r['speedup_vs_tape_4096']:,.0f}× "
            f"| {r['gradient_over_forward_256']:.2f} / {r['gradient_over_forward_4096']:.2f} "
            f"| {r['explain_over_bare_64']:.2f}× / {r['explain_over_bare_256']:.2f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tape-samples", type=int, default=100)
    parser.add_argument("--framework", choices=("tf", "tf2"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.framework:  # child process: one framework, JSON on the last line
        print(json.dumps(measure(args.framework, args.tape_samples)))
        return
    rows = []
    for framework in ("tf", "tf2"):
        child = subprocess.run(
            [sys.executable, __file__, "--framework", framework, "--tape-samples", str(args.tape_samples)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            sys.exit(f"benchmark for {framework} failed:\n{child.stderr[-3000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))
    graph = rows[0]
    print(
        f"\ngraph mode: the tape approach added {graph['tape_ops_added_per_call']:.0f} ops per call to the "
        f"policy graph (per-obs time {graph['tape_s_per_obs_first_10pct'] * 1e3:.1f} ms in the first 10% of "
        f"calls, {graph['tape_s_per_obs_last_10pct'] * 1e3:.1f} ms in the last); explain() added "
        f"{graph['explain_ops_added_over_100_calls']} ops over 100 calls."
    )
    print(f"JSON: {RESULTS / 'engine.json'}")


if __name__ == "__main__":
    main()
