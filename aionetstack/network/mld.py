"""The host side of MLDv2 (RFC 3810 §6) for one interface, sans-IO: as far as a host that
listens only to its own groups (all-nodes and the solicited-node groups of its addresses)
needs.

- State changes (§6.1): a newly joined group is reported at once with a CHANGE_TO_EXCLUDE_MODE
  record, a left one with CHANGE_TO_INCLUDE_MODE and no sources; each is sent again
  [Robustness Variable] - 1 times at random intervals in (0, [Unsolicited Report Interval]).
- Queries (§6.2): a general query schedules one report of every group after a random delay in
  [0, Maximum Response Delay]; a multicast address (and source) specific query schedules one for
  that group, merged with a pending one by §6.2's rules 1 to 5; the QRV of a query becomes the
  robustness variable (§9.1: never zero).
- Answers (§6.3): MODE_IS_EXCLUDE with no sources for a group we listen to; a source-specific
  query for a group in EXCLUDE {} mode is answered IS_IN(queried sources) (rule 3, B - A with A
  empty).
- Never reported (§6): ff02::1 and groups of scope 0 or 1.

- MLDv1 compatibility (§8.2.1): after an MLDv1 query the host speaks MLDv1 for [Older Version
  Querier Present Timeout] (§9.12: robustness x 125 s + 10 s): :meth:`MldListener.version` says
  which, and the caller sends each record as an MLDv1 report, or a done for a leave (RFC 2710).
  Not here: MLDv1's report suppression (hearing another listener's report), which only saves
  traffic.

Nothing reads a clock: every call takes ``now``; randomness comes from an injectable
``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from aionetstack.wire.ipv6 import ALL_NODES, UNSPECIFIED
from aionetstack.wire.ndp import (
    MLD_CHANGE_TO_EXCLUDE,
    MLD_CHANGE_TO_INCLUDE,
    MLD_MODE_IS_EXCLUDE,
    MLD_MODE_IS_INCLUDE,
    MldQuery,
    MldRecord,
)

__all__ = ["DEFAULT_ROBUSTNESS", "UNSOLICITED_REPORT_INTERVAL", "MldListener", "split_records"]

#: RFC 3810 §9.1 and §9.11 defaults.
DEFAULT_ROBUSTNESS = 2
UNSOLICITED_REPORT_INTERVAL = 1.0
QUERY_INTERVAL = 125.0
QUERY_RESPONSE_INTERVAL = 10.0
#: Queried sources remembered per group (§6.2 rule 5 augments the list); past this the pending
#: answer covers the whole group, which answers every source asked about.
MAX_QUERIED_SOURCES = 64
#: What one report may carry and still fit the IPv6 minimum MTU (RFC 8200 §5): 1280 less the IPv6
#: header (40), the hop-by-hop header (8) and the report's own header (8); records are 20 octets
#: plus 16 a source (RFC 3810 §5.2.4).
REPORT_ROOM = 1280 - 40 - 8 - 8


def _reported(group: bytes) -> bool:
    """RFC 3810 §6: nothing is sent about ff02::1 or a group of scope 0 (reserved) or 1."""
    return group != ALL_NODES and group[0] == 0xFF and group[1] & 0x0F > 1


def split_records(records: list[MldRecord]) -> list[list[MldRecord]]:
    """Records in reports that each fit the minimum MTU (RFC 3810 §5.2.15: split across reports)."""
    reports: list[list[MldRecord]] = []
    current: list[MldRecord] = []
    room = REPORT_ROOM
    for record in records:
        size = 20 + 16 * len(record[2])
        if current and size > room:
            reports.append(current)
            current, room = [], REPORT_ROOM
        current.append(record)
        room -= size
    if current:
        reports.append(current)
    return reports


class MldListener:
    """MLDv2 for one interface (see the module docstring). Call :meth:`update` with the groups the
    interface listens to whenever they change, :meth:`query` with each valid query, and
    :meth:`poll` when :meth:`next_deadline` passes; send what they return, each list of records
    as one report (:func:`split_records` first)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        robustness: int = DEFAULT_ROBUSTNESS,
        unsolicited_report_interval: float = UNSOLICITED_REPORT_INTERVAL,
    ) -> None:
        if robustness < 1:
            raise ValueError(f"robustness must be at least 1 (RFC 3810 §9.1), got {robustness}")
        if unsolicited_report_interval <= 0:
            raise ValueError(
                f"unsolicited_report_interval must be positive, got {unsolicited_report_interval}"
            )
        self.rng = rng
        self.robustness = robustness
        self.unsolicited_report_interval = unsolicited_report_interval
        #: The groups reported as joined (those §6 lets us report).
        self.groups: set[bytes] = set()
        self._general: float | None = None  # the interface timer (§6.2 rule 2)
        self._pending: dict[bytes, float] = {}  # multicast address timers
        self._queried_sources: dict[bytes, set[bytes]] = {}  # empty: the whole group (§6.2 rule 4)
        self._changes: dict[bytes, list[int]] = {}  # group -> [record type, retransmissions left]
        self._change_deadline: float | None = None
        self._v1_until = 0.0  # Older Version Querier Present timer (§8.2.1)
        self.stats: dict[str, int] = {
            "joins": 0,
            "leaves": 0,
            "queries": 0,
            "queries-other-group": 0,  # specific queries for groups we do not listen to
            "v1-queries": 0,  # each (re)starts MLDv1 compatibility mode
        }

    def version(self, now: float) -> int:
        """2, or 1 while an MLDv1 querier was heard lately (RFC 3810 §8.2.1)."""
        return 1 if now < self._v1_until else 2

    # -- state changes (§6.1) -------------------------------------------------------------------

    def update(self, groups: Iterable[bytes], now: float) -> list[MldRecord]:
        """The interface now listens to ``groups``: the state change records to send at once."""
        wanted = {group for group in groups if _reported(group)}
        joined = sorted(wanted - self.groups)
        left = sorted(self.groups - wanted)
        if not joined and not left:
            return []
        self.groups = wanted
        records: list[MldRecord] = []
        for group in joined:
            self.stats["joins"] += 1
            records.append((MLD_CHANGE_TO_EXCLUDE, group, ()))
            self._note_change(group, MLD_CHANGE_TO_EXCLUDE)
        for group in left:
            self.stats["leaves"] += 1
            records.append((MLD_CHANGE_TO_INCLUDE, group, ()))
            self._note_change(group, MLD_CHANGE_TO_INCLUDE)
            # §6.2: nothing is answered any more for a group we left.
            self._pending.pop(group, None)
            self._queried_sources.pop(group, None)
        if self._changes and self._change_deadline is None:
            self._change_deadline = self._retransmit_time(now)
        return records

    def _note_change(self, group: bytes, record_type: int) -> None:
        # §6.1: a new change to a group with a pending one replaces it, and its retransmission
        # count starts again from [Robustness Variable] - 1.
        if self.robustness > 1:
            self._changes[group] = [record_type, self.robustness - 1]
        else:
            self._changes.pop(group, None)

    def _retransmit_time(self, now: float) -> float:
        return now + self.rng.uniform(0, self.unsolicited_report_interval)

    # -- queries (§6.2) -------------------------------------------------------------------------

    def query(self, query: MldQuery, now: float) -> None:
        """A valid query (its source link-local, hop limit 1: the caller checked RFC 3810 §5.1.14, §5)."""
        self.stats["queries"] += 1
        if query.version == 1:
            self.stats["v1-queries"] += 1
            # §8.2.1, §9.12: [Older Version Querier Present Timeout].
            self._v1_until = now + self.robustness * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL
        if query.robustness:
            self.robustness = query.robustness  # §9.1: the querier's QRV, unless zero
        general = query.group == UNSPECIFIED
        if not general and query.group not in self.groups:
            self.stats["queries-other-group"] += 1
            return
        delay = now + self.rng.uniform(0, query.max_response_delay)
        if self._general is not None and self._general <= delay:
            return  # rule 1: a general answer already due sooner covers this
        if general:
            self._general = delay  # rule 2
            return
        group = query.group
        pending = self._pending.get(group)
        if pending is None:
            # rule 3
            self._pending[group] = delay
            self._queried_sources[group] = set(query.sources)
            return
        self._pending[group] = min(pending, delay)
        recorded = self._queried_sources[group]
        if not query.sources or not recorded:
            recorded.clear()  # rule 4: the whole group
        else:
            recorded.update(query.sources)  # rule 5
            if len(recorded) > MAX_QUERIED_SOURCES:
                recorded.clear()

    # -- timers ---------------------------------------------------------------------------------

    def poll(self, now: float) -> list[list[MldRecord]]:
        """Reports due by ``now``, each a list of records (to split with :func:`split_records`)."""
        reports: list[list[MldRecord]] = []
        if self._general is not None and now >= self._general:
            self._general = None
            # §6.3 rule 1: the current state of every group, here EXCLUDE {}.
            current: list[MldRecord] = [(MLD_MODE_IS_EXCLUDE, group, ()) for group in sorted(self.groups)]
            if current:
                reports.append(current)
        due = sorted(group for group, deadline in self._pending.items() if now >= deadline)
        if due:
            answers: list[MldRecord] = []
            for group in due:
                del self._pending[group]
                sources = self._queried_sources.pop(group, set())
                if sources:
                    answers.append((MLD_MODE_IS_INCLUDE, group, tuple(sorted(sources))))  # rule 3
                else:
                    answers.append((MLD_MODE_IS_EXCLUDE, group, ()))  # rule 2
            reports.append(answers)
        if self._change_deadline is not None and now >= self._change_deadline:
            again: list[MldRecord] = []
            for group, change in list(self._changes.items()):
                again.append((change[0], group, ()))
                change[1] -= 1
                if change[1] <= 0:
                    del self._changes[group]
            if again:
                reports.append(again)
            self._change_deadline = self._retransmit_time(now) if self._changes else None
        return reports

    def next_deadline(self) -> float | None:
        times = list(self._pending.values())
        if self._general is not None:
            times.append(self._general)
        if self._change_deadline is not None:
            times.append(self._change_deadline)
        return min(times, default=None)
