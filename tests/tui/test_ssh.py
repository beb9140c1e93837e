"""The app over a real SSH connection: a throwaway sshd on a loopback port, ``ssh -tt`` inside
tmux at 80x24. The app draws, keys reach it, ``q`` ends the session, and a killed ssh client
leaves no stackyard process behind on the server.

Works as root (CI: sshd wants /run/sshd) and as a normal user (sshd then lets in only that
user, which is who connects). Every wait polls against a deadline.
"""

from __future__ import annotations

import getpass
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.test_tmux import DEADLINE, Tmux, _binary, _up

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    """An sshd of our own: host key, client key, config and pid file in a temporary folder."""

    def __init__(self, root: Path) -> None:
        assert os.path.exists(SSHD), "sshd is not installed (.ci/run installs openssh-server)"
        assert shutil.which("ssh") and shutil.which("ssh-keygen"), "the ssh client is missing"
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(root / name)], check=True, timeout=30)
        (root / "authorized_keys").write_bytes((root / "client_key.pub").read_bytes())
        os.chmod(root / "authorized_keys", 0o600)
        self.port = _free_port()
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {root / 'host_key'}",
            f"PidFile {root / 'sshd.pid'}",
            f"AuthorizedKeysFile {root / 'authorized_keys'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "PrintMotd no",
            "LogLevel ERROR",
        ]) + "\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.log = open(root / "sshd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + DEADLINE
        while True:
            assert self.proc.poll() is None, f"sshd exited: {self.log_text()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise AssertionError(f"sshd did not listen: {self.log_text()}") from None
                time.sleep(0.05)

    def log_text(self) -> str:
        self.log.flush()
        return (self.root / "sshd.log").read_text(errors="replace")

    def ssh(self, *remote: str) -> list[str]:
        """The ssh command line that runs ``remote`` on this server, with a terminal."""
        return ["ssh", "-tt", "-p", str(self.port), "-i", str(self.root / "client_key"),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                f"{getpass.getuser()}@127.0.0.1", *remote]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    server = Sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()


def _remote(tmp_path: Path, seed: int) -> list[str]:
    """The remote command: the venv's stackyard, with a PATH and HOME that find it."""
    binary = _binary()
    return ["env", f"PATH={Path(binary).parent}:/usr/bin:/bin", f"HOME={tmp_path}",
            f"XDG_CONFIG_HOME={tmp_path / 'config'}", "TERM=xterm-256color",
            binary, "default", "--seed", str(seed)]


def _stackyards(seed: int) -> list[int]:
    """Processes running stackyard with this test's seed (its mark)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"stackyard") for a in argv[:2]) and str(seed).encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.fixture
def tmux80(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        t.close()


def _seed() -> int:
    return random.SystemRandom().randrange(10**8, 10**9)


def test_the_app_over_ssh_draws_takes_keys_and_quits(sshd: Sshd, tmux80: Tmux,
                                                     tmp_path: Path) -> None:
    seed = _seed()
    tmux80("new-session", "-d", "-s", tmux80.name, "-x", "80", "-y", "24",
           *sshd.ssh(*_remote(tmp_path, seed)))
    screen = tmux80.wait(_up, "the three panes over ssh")
    assert screen.splitlines()[0].startswith("stackyard default #") or "req/s" in \
        screen.splitlines()[0], screen
    assert _stackyards(seed), "the app runs on the server side"
    tmux80.keys("Space")
    tmux80.wait(lambda s: "paused" in s.splitlines()[0], "the paused header")
    tmux80.keys("h")  # a CPU hog on the selected container
    tmux80.wait(lambda s: "faults 1" in s.splitlines()[0], "the fault count in the header")
    tmux80.keys("q")
    assert tmux80.wait_dead() == 0, sshd.log_text()
    end = time.monotonic() + DEADLINE
    while _stackyards(seed) and time.monotonic() < end:
        time.sleep(0.05)
    assert not _stackyards(seed), "stackyard still runs after q"


def test_killing_the_ssh_client_ends_the_app_on_the_server(sshd: Sshd, tmux80: Tmux,
                                                            tmp_path: Path) -> None:
    seed = _seed()
    tmux80("new-session", "-d", "-s", tmux80.name, "-x", "80", "-y", "24",
           *sshd.ssh(*_remote(tmp_path, seed)))
    tmux80.wait(_up, "the three panes over ssh")
    (client,) = (int(p) for p in tmux80.flags("pane_pid"))
    assert Path(f"/proc/{client}/cmdline").read_bytes().split(b"\0")[0].endswith(b"ssh")
    assert _stackyards(seed)
    os.kill(client, signal.SIGKILL)
    end = time.monotonic() + DEADLINE
    while _stackyards(seed) and time.monotonic() < end:
        time.sleep(0.05)
    left = _stackyards(seed)
    assert not left, f"orphaned stackyard processes {left} after the ssh client died"


