"""MQTT bridge benchmark; run ``python bench/mqtt.py [SECONDS]`` from the repository root.

The ``default`` scenario at 1x, 5 snapshots a second, with SQL storage (as ``stackyard serve``
runs it), for SECONDS (default 10) of wall time each:

* ``baseline``: the session alone, with one in-process subscriber that does nothing;
* ``mqtt``: the same session served on a mosquitto broker (its own process) with 10 viewers
  attached — light subscribers in another process that decode every snapshot, as the app does.

It prints the snapshots published a second, what the viewers received, and the server
process's CPU as a share of one core in both runs, with their ratio. Needs mosquitto installed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from stackyard.core.mqtt.config import BrokerConfig
from stackyard.core.mqtt.server import MqttServer, ServerOptions
from stackyard.core.run import open_run
from stackyard.core.session import LocalSession

HZ = 5.0
VIEWERS = 10

VIEWER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    import aiomqtt
    from stackyard.core.protocol import Snapshot, decode

    async def viewer(port, counts, i):
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe("stackyard/bench/snapshot")
            await client.subscribe("stackyard/bench/driver")
            print("subscribed", flush=True)
            async for m in client.messages:
                if str(m.topic).endswith("/snapshot"):
                    decode(Snapshot, m.payload)
                    counts[i] += 1

    async def main(port, n):
        counts = [0] * n
        tasks = [asyncio.create_task(viewer(port, counts, i)) for i in range(n)]
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(sum(counts), flush=True)
        for t in tasks:
            t.cancel()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        sys.exit("bench/mqtt.py needs mosquitto (apt-get install mosquitto)")
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "set_tcp_nodelay true\nlog_dest stderr\nlog_type error\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit("mosquitto did not start")
        time.sleep(0.05)


def _session() -> LocalSession:
    return open_run("default", storage=True).session(speed=1.0, hz=HZ)


async def _measure(wall: float) -> tuple[float, float]:
    """CPU % of one core of this process and wall seconds over ``wall`` seconds."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(wall)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - wall0
    return 100.0 * cpu / elapsed, elapsed


async def baseline(wall: float) -> tuple[float, float]:
    """(CPU %, snapshots a second) of the session alone."""
    session = _session()
    snaps = [0]
    session.subscribe(lambda snap: snaps.__setitem__(0, snaps[0] + 1))
    await session.start()
    await asyncio.sleep(1.0)  # past the start-up
    before = snaps[0]
    cpu, elapsed = await _measure(wall)
    rate = (snaps[0] - before) / elapsed
    await session.close()
    return cpu, rate


async def served(wall: float, port: int) -> tuple[float, float, float]:
    """(CPU %, snapshots published a second, snapshots the viewers received a second)."""
    session = _session()
    server = MqttServer(session, BrokerConfig(port=port), options=ServerOptions(
        run_id="bench", version="bench"))
    await session.start()
    await server.start()
    viewers = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VIEWER_SCRIPT, str(port), str(VIEWERS),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert viewers.stdout is not None and viewers.stdin is not None
    for _ in range(VIEWERS):
        await viewers.stdout.readline()
    await asyncio.sleep(1.0)

    async def received() -> int:
        assert viewers.stdout is not None and viewers.stdin is not None
        viewers.stdin.write(b"\n")
        await viewers.stdin.drain()
        return int((await viewers.stdout.readline()).decode())

    published, got = server.counts["snapshots"], await received()
    cpu, elapsed = await _measure(wall)
    rate = (server.counts["snapshots"] - published) / elapsed
    got = await received() - got
    viewers.stdin.close()
    await viewers.wait()
    await server.close()
    await session.close()
    return cpu, rate, got / elapsed


def main() -> None:
    wall = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    with tempfile.TemporaryDirectory() as folder:
        broker, port = _mosquitto(Path(folder))
        try:
            base_cpu, base_rate = asyncio.run(baseline(wall))
            cpu, rate, received = asyncio.run(served(wall, port))
        finally:
            broker.terminate()
            broker.wait(10)
    print(f"mqtt: {rate:.2f} snapshots/s published at {HZ:g} Hz asked ({base_rate:.2f}/s "
          f"made without MQTT); {VIEWERS} viewers received {received:.1f} snapshots/s in all")
    print(f"mqtt: server CPU {cpu:.1f}% of a core with MQTT and {VIEWERS} viewers vs "
          f"{base_cpu:.1f}% without: ratio {cpu / base_cpu if base_cpu else float('nan'):.2f}x")


if __name__ == "__main__":
    main()
