"""Terminal output benchmark: bytes per second the app writes, what an SSH link carries.

Run ``python bench/ssh.py`` from the repository root (about 3 minutes; ``--seconds`` shortens
it). The real ``stackyard`` binary runs on a pseudo-terminal (``TERM=xterm-256color``) at 80x24
and 160x48, on ``default`` at 1x and at 10x; after a warm-up, every byte read from the master
side for a fixed wall interval is counted. Each configuration is measured twice in the same
invocation: as shipped, and with ``STACKYARD_NO_OUTPUT_OPT=1`` (every widget redrawn whole on
every snapshot, no refresh cap: the app as it was before output was optimised); the ratio is
baseline / optimised. Targets at 1x: at most 8,000 bytes/s at 80x24 and 20,000 at 160x48.

``python bench/ssh.py --widgets`` is a developer's view instead: the app under ``run_test()``
for the same interval, each screen update's bytes attributed to the widget under it, and how
many updates touched each widget.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections import Counter
from pathlib import Path
from typing import Any

SIZES = ((80, 24), (160, 48))
SPEEDS = (1.0, 10.0)
TARGETS = {(80, 24): 8000, (160, 48): 20000}
WARMUP = 4.0


def _binary() -> str:
    beside = Path(sys.executable).with_name("stackyard")
    found = str(beside) if beside.exists() else shutil.which("stackyard")
    if found is None:
        raise SystemExit("bench/ssh.py: the stackyard console script is not installed")
    return found


def measure(size: tuple[int, int], speed: float, seconds: float, optimised: bool) -> float:
    """Bytes per second the real binary writes to a pty of ``size`` over ``seconds``."""
    cols, rows = size
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
    env.pop("NO_COLOR", None)
    env.pop("STACKYARD_NO_OUTPUT_OPT", None)
    if not optimised:
        env["STACKYARD_NO_OUTPUT_OPT"] = "1"
    proc = subprocess.Popen([_binary(), "default", "--speed", f"{speed:g}"], stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True,
                            close_fds=True)
    os.close(slave)
    try:
        total = 0
        start = time.monotonic()
        counting_from = start + WARMUP
        end = counting_from + seconds
        seen = b""
        while True:
            now = time.monotonic()
            if now >= end:
                break
            ready, _, _ = select.select([master], [], [], end - now)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            if len(seen) < 100_000:
                seen += data
            if time.monotonic() >= counting_from:
                total += len(data)
        if b"Network" not in seen:
            raise SystemExit(f"bench/ssh.py: the app did not draw at {cols}x{rows}")
        return total / seconds
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            with_data, _, _ = select.select([master], [], [], 0.1)
            if with_data:
                with contextlib.suppress(OSError):
                    os.read(master, 65536)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)


def widgets(size: tuple[int, int], speed: float, seconds: float) -> None:
    """Print each widget's share of the bytes written, under ``run_test()``."""
    from textual._compositor import ChopsUpdate

    from stackyard.core.run import open_run
    from stackyard.tui.app import StackyardApp

    async def go() -> tuple[Counter[str], Counter[str], int]:
        session = open_run("default", storage=True).session(speed=speed)
        app = StackyardApp(session)
        by_widget: Counter[str] = Counter()
        updates: Counter[str] = Counter()
        frames = [0]
        counting = [False]
        real = app._display

        def spy(screen: Any, renderable: Any) -> None:
            if counting[0] and isinstance(renderable, ChopsUpdate):
                frames[0] += 1
                touched: set[str] = set()
                for y, x1, x2 in renderable.spans:
                    for x in range(x1, x2 + 1):
                        try:
                            widget, _ = screen.get_widget_at(x, y)
                        except Exception:
                            continue
                        name = type(widget).__name__ + (f"#{widget.id}" if widget.id else "")
                        by_widget[name] += 1
                        touched.add(name)
                for name in touched:
                    updates[name] += 1
            real(screen, renderable)

        app._display = spy  # type: ignore[method-assign]
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await asyncio.sleep(WARMUP)
            counting[0] = True
            await asyncio.sleep(seconds)
            counting[0] = False
        return by_widget, updates, frames[0]

    cells, updates, frames = asyncio.run(go())
    total = sum(cells.values()) or 1
    print(f"widgets at {size[0]}x{size[1]}, {speed:g}x: {frames} screen updates in {seconds:g} s; "
          "cells rewritten per second by widget:")
    for name, n in cells.most_common():
        print(f"  {name:<28} {n / seconds:8.0f} cells/s ({100 * n / total:4.1f}%), "
              f"in {updates[name] / seconds:4.1f} updates/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="wall seconds measured")
    parser.add_argument("--widgets", action="store_true",
                        help="per-widget breakdown under run_test() instead")
    args = parser.parse_args()
    if args.widgets:
        for size in SIZES:
            widgets(size, 1.0, args.seconds)
        return
    for size in SIZES:
        for speed in SPEEDS:
            opt = measure(size, speed, args.seconds, optimised=True)
            base = measure(size, speed, args.seconds, optimised=False)
            target = f" (target <= {TARGETS[size]:,})" if speed == 1.0 else ""
            print(f"ssh: {size[0]}x{size[1]} default {speed:g}x: {opt:,.0f} bytes/s{target}; "
                  f"unoptimised {base:,.0f} bytes/s; reduction {base / opt if opt else 0:.1f}x "
                  f"over {args.seconds:g} s", flush=True)


if __name__ == "__main__":
    main()
