"""TUI cost benchmark; run ``python bench/tui.py`` from the repository root.

* ``cpu``: the app under ``run_test()`` on ``default`` at 1x for 10 s of wall time, whole-process
  CPU as a percentage of one core (target: at most 20%), against a baseline in the same
  invocation: the same session driven for 10 s with no app.
* ``latency``: the median time from a fault key (``h``, CPU hog on the selected container, then
  ``u`` to undo it) to the first frame that shows the fault (target: at most 50 ms).
* ``terminal``: if tmux is installed, the real ``stackyard`` binary in a 100x30 tmux pane for
  10 s, CPU of its process from /proc (what an SSH user's machine pays, output encoding
  included).
* ``100x``: the app on ``default`` (with storage) asked for 100x: under ``run_test()``, the
  simulated seconds per wall second over 10 s after a warm-up and the driver's reported achieved
  speed; and, with tmux, the real binary at ``--speed 100`` in a 160x40 pane, the achieved speed
  its header shows (target: at least 95x on an otherwise idle machine, against the CPU of one
  core).
"""

from __future__ import annotations

import asyncio
import os
import re
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


def _session(publish_hz: float = 4.0, speed: float = 1.0) -> LocalSession:
    return open_run("default", storage=True).session(speed=speed, hz=publish_hz)


async def app_at_100x() -> tuple[float, float, float, float]:
    """(simulated s per wall s, the driver's achieved, process CPU % of one core, simulated s
    per CPU s) of the app on ``default`` asked for 100x, over WALL seconds after 3 s of
    warm-up. The last is what a free core would give, when the machine is not idle."""
    session = _session(speed=100.0)
    app = StackyardApp(session, theme_dir=Path(tempfile.mkdtemp()) / "none")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await asyncio.sleep(3.0)
        engine: Any = session.engine
        sim0, wall0, cpu0 = engine.now, time.perf_counter(), time.process_time()
        await asyncio.sleep(WALL)
        wall = time.perf_counter() - wall0
        sim = engine.now - sim0
        cpu = time.process_time() - cpu0
        achieved = session.status.achieved
    return sim / wall, achieved, 100.0 * cpu / wall, sim / cpu if cpu else 0.0


def _binary() -> str | None:
    """The stackyard script beside this Python (its venv's), else the one on PATH."""
    binary = Path(sys.executable).with_name("stackyard")
    return str(binary) if binary.exists() else shutil.which("stackyard")


def terminal_100x() -> str:
    """The real binary at --speed 100 in tmux: the achieved speed its header shows."""
    tmux, exe = shutil.which("tmux"), _binary()
    if tmux is None or exe is None:
        return "100x terminal: skipped (needs tmux and the installed stackyard script)"
    sock = f"stackyard-bench100-{os.getpid()}"
    run = [tmux, "-L", sock, "-f", "/dev/null"]
    try:
        subprocess.run([*run, "new-session", "-d", "-s", "b", "-x", "160", "-y", "40", exe,
                        "--speed", "100"], check=True)
        got: list[float] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(got) < 25:
            time.sleep(0.5)
            screen = subprocess.run([*run, "capture-pane", "-p", "-t", "b"],
                                    capture_output=True, text=True).stdout
            m = re.search(r"100x \(got ([0-9.]+)x\)", screen)
            if m and time.monotonic() > deadline - 25:  # after 5 s of warm-up
                got.append(float(m.group(1)))
        subprocess.run([*run, "send-keys", "-t", "b", "q"], check=True)
        if not got:
            return "100x terminal: the header never showed an achieved speed"
        return (f"100x terminal: real stackyard at --speed 100 in a 160x40 tmux pane: header "
                f"shows got {statistics.median(got):.0f}x (median of {len(got)} readings, "
                f"min {min(got):.0f}x, max {max(got):.0f}x; target >= 95x on an idle machine)")
    finally:
        subprocess.run([*run, "kill-server"], capture_output=True)


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
    tmux, exe = shutil.which("tmux"), _binary()
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
    sim_rate, achieved, cpu100, per_cpu = asyncio.run(app_at_100x())
    print(f"100x: app under run_test() on default asked for 100x: {sim_rate:.1f} simulated s "
          f"per wall s over {WALL:g} s, driver reports {achieved:.1f}x, process CPU {cpu100:.0f}% "
          f"of one core, {per_cpu:.0f} simulated s per CPU s (target >= 95x on an idle "
          "machine)", flush=True)
    print(terminal_100x(), flush=True)


if __name__ == "__main__":
    main()
