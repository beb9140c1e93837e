"""Write-ahead log histories as a tree of branches, holding only the records still needed.

Every primary writes onto a branch of its own: the records it committed after forking from its
parent branch at some LSN (PostgreSQL's timelines and their history files). A node's data is a
*history*: a branch and an end LSN, meaning the parent chain up to each fork and then the branch
itself. Comparing two histories (does one extend the other? where do they part?) needs only the
fork points, never the records, so a node holds no log of its own and a branch can drop records
that no replica, no archive and no lag figure needs any more: memory stays flat however long
the run.

Each record carries a running digest of the history up to it, so a node's rows can be checked
against the model without the model keeping them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .database import Write

MASK = (1 << 64) - 1


def row_digest(lsn: int, wid: int) -> int:
    """A 64-bit mix of one row's identity; a history's digest is the sum of its rows'."""
    return ((lsn * 0x9E3779B97F4A7C15) ^ (wid * 0xBF58476D1CE4E5B9) ^ (lsn >> 7)) & MASK


def rows_digest(rows: Iterable[tuple[int, int]]) -> int:
    """The digest of (lsn, wid) rows (order does not matter)."""
    total = 0
    for lsn, wid in rows:
        total += row_digest(lsn, wid)
    return total & MASK


class Branch:
    """The records one primary committed after forking from ``parent`` at LSN ``fork``."""

    __slots__ = ("depth", "end", "fork", "fork_digest", "parent", "records", "start")

    def __init__(self, parent: Branch | None, fork: int, fork_digest: int) -> None:
        self.parent = parent
        self.fork = fork
        """The LSN it forked at: its first record has LSN ``fork + 1``."""
        self.fork_digest = fork_digest
        """The digest of the history up to ``fork``."""
        self.depth: int = parent.depth + 1 if parent is not None else 0
        self.records: list[Write] = []
        self.start = fork
        """The LSN of the last record no longer held (``records[0]`` has ``start + 1``)."""
        self.end = fork
        """The LSN of its last record."""

    def append(self, w: Write) -> None:
        self.records.append(w)
        self.end += 1

    def get(self, lsn: int) -> Write | None:
        """Its record at ``lsn``, if still held."""
        i = lsn - self.start - 1
        if 0 <= i < len(self.records):
            return self.records[i]
        return None

    def trim(self, keep_from: int) -> None:
        """Drop the records before LSN ``keep_from`` (always keeping the last one)."""
        n = min(keep_from - 1, self.end - 1) - self.start
        if n > 0:
            del self.records[:n]
            self.start += n

    def truncate(self, lsn: int) -> None:
        """Drop the records after ``lsn`` (a restore cutting its own branch back)."""
        if lsn < self.end:
            del self.records[max(lsn - self.start, 0):]
            self.end = lsn
            self.start = min(self.start, lsn)


def owner(branch: Branch, lsn: int) -> Branch:
    """The branch on ``branch``'s history that wrote LSN ``lsn``."""
    while lsn <= branch.fork and branch.parent is not None:
        branch = branch.parent
    return branch


def record(branch: Branch, lsn: int) -> Write | None:
    """The record at ``lsn`` of the history ending on ``branch``, if still held."""
    if lsn < 1:
        return None
    return owner(branch, lsn).get(lsn)


def digest_at(branch: Branch, lsn: int) -> int | None:
    """The digest of the history on ``branch`` up to ``lsn`` (None if no longer known: fork
    points are always known, other LSNs while their record is held)."""
    if lsn <= 0:
        return 0
    b = branch
    while lsn <= b.fork:
        if lsn == b.fork:
            return b.fork_digest
        if b.parent is None:
            return None
        b = b.parent
    w = b.get(lsn)
    return w.digest if w is not None else None


def common(a: Branch, na: int, b: Branch, nb: int) -> int:
    """How many records the histories (a, na) and (b, nb) have in common, from LSN 1."""
    limit = na if na < nb else nb
    while a is not b:
        if a.depth < b.depth:
            a, b = b, a
        if a.fork < limit:
            limit = a.fork
        if a.parent is None:  # separate trees: only what both roots took over is shared
            return limit if limit < b.fork else b.fork
        a = a.parent
    return limit


def records(branch: Branch, lo: int, hi: int) -> list[Write]:
    """The records with LSN in (lo, hi] of the history on ``branch`` that are still held."""
    out: list[Write] = []
    b = branch
    while hi > lo:
        first = max(lo, b.fork, b.start)
        if hi > first:
            out[:0] = b.records[first - b.start : hi - b.start]
        hi = min(hi, b.fork)
        if b.parent is None:
            break
        b = b.parent
    return out
