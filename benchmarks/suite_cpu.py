"""Where a command's CPU goes (e.g. ``make test``): every process it starts, by kind.

    python3 benchmarks/suite_cpu.py [--out DIR] [--name NAME] [--interval S] -- make test

Runs the command and reads ``/proc`` once per ``--interval`` second(s) while it runs: each
process's own CPU seconds (user + system), command line and parent. A process belongs to the
run when its parent chain, as first seen, reaches the command (Ray's workers included: their
raylet is a child of a driver the command started). At the end it prints the wall time, the
total CPU seconds and a table by kind (the pytest drivers, ``rllib-saliency`` runs, Ray's own
processes, env runners, examples, browsers, ...), and writes ``NAME.json`` (every process) and
``NAME.md`` (the table) under ``--out``.

Why CPU and not only the wall clock: on a 2-core machine the suite keeps both cores busy for
most of its run, so its wall time follows its total CPU, and the wall time of one run moves by
minutes with the machine's speed; a change's CPU by kind says what it saved. A process that
lives less than the interval is missed, and each process's CPU after the last read before it
ends is not counted, so the totals are lower bounds (compare runs with the same interval).
Standard library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def read_processes() -> dict[str, dict]:
    """``{"pid:start": {pid, ppid, cpu, cmd}}`` for every process readable now."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as file:
                stat = file.read()
            with open(f"/proc/{name}/cmdline", "rb") as file:
                cmd = file.read().replace(b"\0", b" ").decode(errors="replace").strip()[:300]
        except OSError:
            continue  # it ended between listdir and open
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(name), int(fields[1])
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        found[f"{pid}:{fields[19]}"] = {"pid": pid, "ppid": ppid, "cpu": cpu, "cmd": cmd}
    return found


def kind(cmd: str) -> str:
    """A process's kind, from its command line (Ray names its workers ``ray::ClassName``)."""
    rules = [
        ("-m pytest", "pytest drivers (the tests' own work, local training)"),
        ("rllib_saliency.cli", "rllib-saliency runs"),
        ("bin/rllib-saliency", "rllib-saliency runs"),
        ("examples/", "example scripts"),
        ("block.py", "README blocks"),
        ("chrom", "chromium"),
        ("tensorboard", "tensorboard servers"),
        ("pip", "pip (the virtual environment)"),
        ("ruff", "ruff"),
        ("core/src/ray/gcs/gcs_server", "Ray's own processes"),
        ("core/src/ray/raylet/raylet", "Ray's own processes"),
        ("ray/_private/log_monitor.py", "Ray's own processes"),
        ("ray/dashboard/", "Ray's own processes"),
        ("ray/autoscaler/_private/monitor.py", "Ray's own processes"),
        ("runtime_env/agent", "Ray's own processes"),
        ("ray::DashboardAgent", "Ray's own processes"),
        ("ray::RuntimeEnvAgent", "Ray's own processes"),
        ("ray::IDLE", "Ray workers left idle"),
    ]
    for needle, name in rules:
        if needle in cmd:
            return name
    if cmd.startswith("ray::"):
        return "Ray actors: " + re.sub(r"[.(: ].*", "", cmd[len("ray::") :])
    if "default_worker.py" in cmd:
        return "Ray workers (starting)"
    if "python" in cmd:
        return "other Python processes"
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/results", help="folder for NAME.json and NAME.md")
    parser.add_argument("--name", default="suite_cpu")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between reads of /proc")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --, e.g. -- make test")
    if args.interval <= 0:
        parser.error(f"--interval must be positive; got {args.interval}")

    started = time.monotonic()
    child = subprocess.Popen(command)
    ours = {child.pid}  # pids of the run (a pid is only reused after its process is gone)
    seen: dict[str, dict] = {}
    while True:
        done = child.poll() is not None
        processes = read_processes()
        for key in seen.keys() & processes.keys():
            # Ray renames its workers (ray::IDLE -> ray::ClassName): keep the last name.
            seen[key].update(cpu=processes[key]["cpu"], cmd=processes[key]["cmd"] or seen[key]["cmd"])
        added = True
        while added:  # a new process's children may be listed before it
            added = False
            for key, process in processes.items():
                if key not in seen and (process["pid"] in ours or process["ppid"] in ours):
                    ours.add(process["pid"])
                    seen[key] = process
                    added = True
        if done:
            break
        time.sleep(args.interval)
    wall = time.monotonic() - started

    by_kind: Counter = Counter()
    count: Counter = Counter()
    for process in seen.values():
        by_kind[kind(process["cmd"])] += process["cpu"]
        count[kind(process["cmd"])] += 1
    total = sum(by_kind.values())
    lines = [
        f"`{' '.join(command)}`: exit {child.returncode}, wall {wall:.0f} s, CPU {total:.0f} s "
        f"({len(seen)} processes)",
        "",
        "| kind | CPU (s) | share | processes |",
        "|---|---|---|---|",
    ]
    for name, seconds in by_kind.most_common():
        lines.append(f"| {name} | {seconds:.0f} | {100 * seconds / total:.1f} % | {count[name]} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text(table + "\n")
    record = {
        "command": command,
        "returncode": child.returncode,
        "wall_s": wall,
        "cpu_s": total,
        "by_kind": dict(by_kind),
        "processes": list(seen.values()),
    }
    (out / f"{args.name}.json").write_text(json.dumps(record, indent=1))
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
