"""TUI cost benchmark; run ``python bench/tui.py`` from the repository root.

* ``cpu``: the app under ``run_test()`` on ``default`` at 1x for 10 s of wall time, whole-process
  CPU as a percentage of one core (target: at most 20%), against a baseline in the same
  invocation: the same session driven for 10 s with no app.
* ``latency``: the median time from a fault key (``h``, CPU hog on the selected container, then
  ``u`` to undo it) to the first frame that shows the fault (target: at most 50 ms).
* ``terminal``: if tmux is installed, the real ``stackyard`` binary in a 100x30 tmux pane for
  10 s, CPU of its process from /proc (what an SSH user's machine pays, output encoding
  included).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stackyard.core.run import open_run
from stackyard.core.session import LocalSession
from stackyard.tui.app import StackyardApp

WALL = 10.0
KEYS = 20


def _session(publish_hz: float = 4.0) -> LocalSession:
    return open_run("default", storage=True).session(speed=1.0, hz=publish_hz)


async def baseline_cpu() -> float:
    """CPU % of one core for the engine, driver and storage alone, WALL seconds at 1x."""
    session = _session()
    session.subscribe(lambda snap: None)
    await session.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(WALL)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await session.close()
    return 100.0 * cpu / wall


async def app_cpu_and_latency() -> tuple[float, float, int, list[float]]:
    session = _session()
    app = StackyardApp(session, theme_dir=Path(tempfile.mkdtemp()) / "none")
    displays: list[float] = []
    real_display = app._display

    def spy(screen: Any, renderable: Any) -> None:
        if renderable is not None:
            displays.append(time.perf_counter())
        real_display(screen, renderable)

    app._display = spy  # type: ignore[method-assign]
    latencies: list[float] = []
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        cpu0, wall0, frames0 = time.process_time(), time.perf_counter(), app.frames
        await asyncio.sleep(WALL)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        frames = app.frames - frames0
        achieved = session.status.achieved
        pane: Any = app.screen.query_one("#pane-app")
        for _ in range(KEYS):
            for key in ("h", "u"):
                faults_before = len(session.latest.faults) if session.latest else 0
                t0 = time.perf_counter()
                app.simulate_key(key)
                # Wait for the snapshot with the change to be drawn, then for the next frame.
                while True:
                    await asyncio.sleep(0)
                    snap = session.latest
                    if snap is not None and len(snap.faults) != faults_before and \
                            pane.faulted.get(pane.node.id, 0) == len(snap.faults) and \
                            displays and displays[-1] > t0:
                        break
                if key == "h":
                    latencies.append(displays[-1] - t0)
            await asyncio.sleep(0.1)
    return 100.0 * cpu / wall, achieved, frames, latencies


def terminal_cpu() -> str:
    tmux = shutil.which("tmux")
    binary = Path(sys.executable).with_name("stackyard")
    exe = str(binary) if binary.exists() else shutil.which("stackyard")
    if tmux is None or exe is None:
        return "terminal: skipped (needs tmux and the installed stackyard script)"
    sock = f"stackyard-bench-{os.getpid()}"
    run = [tmux, "-L", sock, "-f", "/dev/null"]
    try:
        subprocess.run([*run, "new-session", "-d", "-s", "b", "-x", "100", "-y", "30", exe],
                       check=True)
        pid = int(subprocess.run([*run, "display", "-p", "-t", "b", "#{pane_pid}"],
                                 check=True, capture_output=True, text=True).stdout)
        deadline = time.monotonic() + 30
        while "Network" not in subprocess.run([*run, "capture-pane", "-p", "-t", "b"],
                                              capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                return "terminal: the app did not come up within 30 s"
            time.sleep(0.1)
        tick = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        c0, w0 = cpu(), time.perf_counter()
        time.sleep(WALL)
        c1, w1 = cpu(), time.perf_counter()
        subprocess.run([*run, "send-keys", "-t", "b", "q"], check=True)
        return (f"terminal: real stackyard in a 100x30 tmux pane: "
                f"{100 * (c1 - c0) / (w1 - w0):.1f}% of one core over {w1 - w0:.1f} s at 1x")
    finally:
        subprocess.run([*run, "kill-server"], capture_output=True)


def main() -> None:
    base = asyncio.run(baseline_cpu())
    cpu, achieved, frames, lat = asyncio.run(app_cpu_and_latency())
    ratio = cpu / base if base else float("inf")
    print(f"cpu: app under run_test() on default at 1x: {cpu:.1f}% of one core over {WALL:g} s "
          f"(target <= 20%); engine+driver+storage alone {base:.1f}%, ratio {ratio:.1f}x; "
          f"{frames} frames, achieved {achieved:.2f}x")
    lat_ms = sorted(x * 1000 for x in lat)
    print(f"latency: fault key -> frame showing it: median {statistics.median(lat_ms):.1f} ms, "
          f"max {lat_ms[-1]:.1f} ms over {len(lat_ms)} keys (target <= 50 ms)")
    print(terminal_cpu())


if __name__ == "__main__":
    main()
