"""The read-only SQL console: query any database node live and see its staleness."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Input, Select, Static

from stackyard.core.protocol import DbNode, QueryResult
from stackyard.core.session import SessionError
from stackyard.tui.format import count, ms, plural
from stackyard.tui.screens.closing import Closable
from stackyard.tui.widgets.footer import KeyFooter

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
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#sql-input", Input).focus()
        self._intro()

    def _intro(self) -> None:
        self.query_one("#sql-status", Static).update(
            f"SQL console on {self.node}{self._staleness(self.node, ',')}: each database "
            "node holds what it has applied, so a lagging replica shows stale rows. "
            "Escape goes back.")

    def on_select_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.node = event.value
            # Back to the query line: keys typed next are SQL, never the app's shortcuts.
            self.query_one("#sql-input", Input).focus()
            if self.last_sql:
                self.run_query(self.node, self.last_sql)
            else:
                self._intro()

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
        status.update(f"{node}: {plural(len(result.rows), 'row')}{more} in "
                      f"{ms(result.elapsed)}{self._staleness(node)}")

    def _staleness(self, node: str, sep: str = " ·") -> str:
        """Where ``node`` stands in the log now: what makes its rows stale, or not."""
        snap = self.yard.session.latest
        if snap is None:
            return ""
        n = snap.find(node, "db")
        if not isinstance(n, DbNode):
            return ""
        text = f"{sep} {n.state}, applied lsn {count(n.applied)}"
        if n.lag_lsn:
            text += f", {plural(n.lag_lsn, 'write')} behind ({ms(n.lag_s)})"
        return text
