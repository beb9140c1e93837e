"""Recording an attached viewer's session: ``stackyard attach --record FILE``.

:class:`ViewerRecording` connects a :class:`~core.mqtt.remote.RemoteSession` to a
:class:`~core.feed_recorder.FeedRecorder`: every snapshot the session delivers — the run's
recent history first, so the file starts up to two minutes before the viewer attached, then
every live one — with its events, the run's command log as the session follows it, and the
commands this viewer sent with their replies. The file keeps the scenario and seed the server
publishes; with the whole command log it re-simulates the run exactly (``stackyard rerun``).

Its metadata says what it is: ``source`` ``viewer``, the run id, broker (never credentials),
viewer name, the server's version and start, the simulated span, the ``seq`` gaps seen, and how
much of the command log it holds. A server that starts a new run under the same id ends the
recording (the file keeps the run it began with).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from msgspec.structs import replace

from stackyard.core.config import ScenarioError
from stackyard.core.feed_recorder import FeedRecorder
from stackyard.core.mqtt.remote import RemoteSession
from stackyard.core.mqtt.topics import WireSnapshot
from stackyard.core.protocol import Snapshot
from stackyard.core.recorder import HIGH_WATER, INTERVAL, RecorderError
from stackyard.core.scenario import scenario_from_dict

__all__ = ["ViewerRecording"]

log = logging.getLogger(__name__)


class ViewerRecording:
    """Records what ``session`` receives to ``path`` (a new file). Make it after
    ``session.open()`` (which reads the run's scenario) and before ``session.start()`` (the
    app's, or :meth:`start`), so the history the session delivers on going live is recorded
    too; :meth:`open` creates the file. The session must follow the command log
    (``RemoteOptions(command_log=True)``) for the file to re-simulate."""

    def __init__(self, session: RemoteSession, path: Path, *, interval: float = INTERVAL,
                 high_water: int = HIGH_WATER) -> None:
        info = session.run_info
        topic = session.topics.scenario
        if info is None:
            raise RecorderError(f"{path}: the server publishes no scenario on {topic} (an "
                                "older stackyard?), so a viewer cannot record it; "
                                "'stackyard serve --record FILE' records on the server")
        try:
            scenario = scenario_from_dict(info.spec, topic)
        except ScenarioError as exc:
            reason = " ".join(str(exc).split())[:200]
            raise RecorderError(f"{path}: cannot record: {reason}") from None
        self.session = session
        self.started = info.started
        meta = {
            "run_id": session.run_id,
            "broker": session.broker.url,
            "viewer": session.viewer,
            "server_version": info.version,
            "server_started": datetime.fromtimestamp(info.started, UTC)
            .isoformat(timespec="seconds") if info.started > 0 else "",
        }
        self.recorder = FeedRecorder(
            path, scenario=scenario, scenario_json=json.dumps(info.spec, separators=(",", ":")),
            seed=info.seed, scenario_text=info.toml, meta=meta, interval=interval,
            high_water=high_water)
        self.stopped: str | None = None
        """Why the recording stopped taking snapshots before it was closed (None: it did
        not)."""
        self._sent_seen = session.sent_total
        self._shown = 0.0
        self._unsubscribe = session.subscribe(self._on_snapshot)
        session.when_live(self.recorder.mark_live)

    @property
    def error(self) -> str | None:
        """Why writing the file failed (None: it did not)."""
        return self.recorder.error

    async def open(self) -> None:
        """Create the file; RecorderError if it cannot be."""
        await self.recorder.open()

    async def start(self) -> None:
        """Create the file and start the session (without an app to start it)."""
        await self.open()
        await self.session.start()

    async def close(self) -> None:
        """Fetch the command log once more (commands whose messages were lost on the way),
        write what is left and close the file."""
        self._unsubscribe()
        if self.stopped is None and self.session.status.link == "connected":
            await self.session.sync_log()
        self._forward()
        await self.recorder.close()

    def _on_snapshot(self, snap: Snapshot) -> None:
        if self.stopped is not None:
            return
        server = self.session.server
        if server is not None and server.started != self.started and server.state == "online":
            self.stopped = (f"the server started a new run at "
                            f"{datetime.fromtimestamp(server.started, UTC):%Y-%m-%d %H:%M:%S} "
                            "UTC; the recording ends with the run it began with")
            log.warning("%s: %s", self.recorder.path, self.stopped)
            self.recorder.note("stopped", self.stopped)
            return
        self._forward()
        if any(e.component == "link" and e.kind == "gap" for e in snap.events):
            # The recorder notes gaps itself (as events of its own, which a rerun knows).
            snap = replace(snap, events=tuple(e for e in snap.events
                                              if not (e.component == "link" and e.kind == "gap")))
        self.recorder.feed(snap, snap.clock if isinstance(snap, WireSnapshot) else None)
        self._shown = snap.time

    def _forward(self) -> None:
        """Hand the recorder the commands the session learnt of since last time."""
        session, recorder = self.session, self.recorder
        for applied in session.log.take():
            recorder.command(applied.n, applied.time, applied.command, applied.seen)
        recorder.log_length(session.log.total)
        fresh = session.sent_total - self._sent_seen
        self._sent_seen = session.sent_total
        if fresh > 0:
            for command, reply in list(session.sent)[-fresh:]:
                recorder.sent(self._shown, command, reply)
