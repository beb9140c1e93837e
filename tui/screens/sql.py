"""The read-only SQL console: query any database node live and see its staleness."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Select, Static

from stackyard.core.protocol import DbNode, QueryResult
from stackyard.core.session import SessionError
from stackyard.tui.screens.closing import Closable

if TYPE_CHECKING:
    from stackyard.tui.app import StackyardApp

EXAMPLE = "SELECT count(*) FROM writes"


class SqlScreen(Closable, Screen[None]):
    """Pick a node, type a query, enter runs it; results and errors show below."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "back")]

    def __init__(self, nodes: list[str], node: str) -> None:
        super().__init__()
        self.nodes = nodes
        self.node = node if node in nodes else (nodes[0] if nodes else "")
        self.last_sql = ""

    @property
    def yard(self) -> StackyardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal(id="sql-bar"):
            yield Select([(n, n) for n in self.nodes], value=self.node, allow_blank=False,
                         id="sql-node", compact=True)
            yield Input(placeholder=f"read-only SQL, e.g. {EXAMPLE}; enter runs", id="sql-input")
        yield Static("", id="sql-status")
        yield DataTable(id="sql-result", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#sql-input", Input).focus()
        self.query_one("#sql-status", Static).update(
            f"SQL console on {self.node}: each database node holds what it has applied, so "
            "a lagging replica shows stale rows.")

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.node = event.value
            if self.last_sql:
                self.run_query(self.node, self.last_sql)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        sql = event.value.strip()
        if sql:
            self.last_sql = sql
            self.run_query(self.node, sql)

    @work(exclusive=True, group="sql")
    async def run_query(self, node: str, sql: str) -> None:
        status = self.query_one("#sql-status", Static)
        table = self.query_one("#sql-result", DataTable)
        status.update(f"running on {node}…")
        try:
            result: QueryResult = await self.yard.session.query(node, sql)
        except SessionError as exc:
            status.update(f"[$error]{node}: {exc}[/]")
            return
        table.clear(columns=True)
        table.add_columns(*[str(c) for c in result.columns])
        for row in result.rows:
            table.add_row(*["NULL" if v is None else str(v) for v in row])
        more = " (truncated)" if result.truncated else ""
        status.update(f"{node}: {len(result.rows)} rows{more} in "
                      f"{result.elapsed * 1000:.1f} ms{self._staleness(node)}")

    def _staleness(self, node: str) -> str:
        """Where ``node`` stands in the log now: what makes its rows stale, or not."""
        snap = self.yard.session.latest
        if snap is None:
            return ""
        n = snap.find(node, "db")
        if not isinstance(n, DbNode):
            return ""
        text = f" · {n.state}, applied lsn {n.applied}"
        if n.lag_lsn:
            text += f", {n.lag_lsn} behind ({n.lag_s:.2f} s)"
        return text
