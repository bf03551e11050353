"""Headless Chromium for the movie pages: the DOM after the scripts ran, console errors, screenshots."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots kept for a person to look at
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]


def free_port() -> int:
    """A free local port, for a server (TensorBoard) a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("headless browser tests need Debian's chromium (apt-get install -y chromium)")
    return path


def artifacts_dir(name: str) -> Path:
    """A folder under tests/artifacts/ (git ignores everything there)."""
    ARTIFACTS.mkdir(exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    folder = ARTIFACTS / name
    folder.mkdir(exist_ok=True)
    return folder


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def dump_dom(
    page: str | os.PathLike, step: int | None = None, budget_ms: int = 10000
) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran (opened at ``#step=K``), and its console messages."""
    url = Path(page).resolve().as_uri() + (f"#step={step}" if step is not None else "")
    result = subprocess.run(
        [chromium(), *FLAGS, f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, _console_errors(result.stderr)


def screenshot(page: str | os.PathLike, path: str | os.PathLike, step: int | None = None) -> list[str]:
    """A 1600x1200 screenshot of the page at ``#step=K``; returns its console messages."""
    url = Path(page).resolve().as_uri() + (f"#step={step}" if step is not None else "")
    result = subprocess.run(
        [
            chromium(),
            *FLAGS,
            "--window-size=1600,1200",
            "--virtual-time-budget=10000",
            f"--screenshot={path}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and os.path.getsize(path) > 0, result.stderr[-3000:]
    return _console_errors(result.stderr)


def attribute(dom: str, element_id: str, name: str) -> str:
    """The value of attribute ``name`` of the element with id ``element_id`` in a dumped DOM."""
    match = re.search(rf'<[^>]*\bid="{re.escape(element_id)}"[^>]*>', dom)
    assert match, f"no element #{element_id} in the page"
    value = re.search(rf'\b{re.escape(name)}="([^"]*)"', match.group(0))
    assert value, f"#{element_id} has no {name} attribute: {match.group(0)[:200]}"
    return value.group(1)


def text_of(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', dom)
    assert match, f"no element #{element_id} in the page"
    return match.group(1)


def curve_points(dom: str, chart: str) -> list[list[tuple[float, float]]]:
    """The points of each polyline of the SVG chart ``#chart-{chart}``."""
    match = re.search(rf'<svg id="chart-{re.escape(chart)}".*?</svg>', dom, re.S)
    assert match, f"no chart {chart!r} in the page"
    return [
        [tuple(map(float, point.split(","))) for point in points.split()]
        for points in re.findall(r'<polyline[^>]*points="([^"]*)"', match.group(0))
    ]


EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|action|poster|data)\s*=\s*["']?(?!data:|#|["'])[^"'\s>]+)"""
    r"""|url\(\s*["']?(?!data:|#)|@import|\b(?:https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}/""",
    re.I,
)


def external_references(html: str) -> list[str]:
    """Anything in an HTML text that could make a browser fetch something from outside the file."""
    # Inline base64 payloads cannot reference anything; skip them (and their false positives).
    stripped = re.sub(r"[A-Za-z0-9+/]{200,}={0,2}", "", html)
    return [m.group(0) for m in EXTERNAL.finditer(stripped)]
