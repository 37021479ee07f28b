"""A saga's history as a timeline: each step's command with its reply (re-sends
included) as one entry, the undoing of a step as an entry of its own, and the lines
about the saga as a whole in between. The console and `sagactl saga show` draw it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from saga_orchestrator.domain import SAGA

# A line that undoes a step: by its status, or by the compensating command it is about.
_UNDOING = frozenset(
    {
        "compensating",
        "compensated",
        "compensation_failed",
        "compensation_pending",
        "compensation retry",
    }
)
_UNDO_COMMANDS = (".refund", ".release", ".cancel")
# A step's entry stays open while its command waits for the reply.
_WAITING = frozenset(
    {"in_progress", "compensating", "compensation retry", "resent", "overdue", "pending"}
)
# Lines that are a deadline passing: the command re-sent, waited for longer, or given up.
_DEADLINE = frozenset({"resent", "overdue", "abandoned"})


def _ms(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds() * 1000, 1)


def timeline(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    open_entries: dict[tuple[str, str], dict[str, Any]] = {}
    for line in history:
        if line["step"] == SAGA:
            entries.append(
                {
                    "kind": "saga",
                    "step": SAGA,
                    "status": line["status"],
                    "started_at": line["at"],
                    "ended_at": line["at"],
                    "duration_ms": 0.0,
                    "lines": [line],
                }
            )
            continue
        undo = line["status"] in _UNDOING or line["message_type"].endswith(_UNDO_COMMANDS)
        key = (line["step"], "undo" if undo else "do")
        entry = open_entries.get(key)
        if entry is None or entry["status"] not in _WAITING:
            entry = {
                "kind": key[1],
                "step": line["step"],
                "started_at": line["at"],
                "lines": [],
                "sends": 0,
                "resends": 0,
                "deadlines_passed": 0,
            }
            open_entries[key] = entry
            entries.append(entry)
        entry["lines"].append(line)
        status = line["status"]
        entry["sends"] += status in ("in_progress", "compensating", "resent", "compensation retry")
        entry["resends"] += status == "resent"
        entry["deadlines_passed"] += status in _DEADLINE
        entry["status"] = status
        entry["ended_at"] = line["at"]
        entry["duration_ms"] = _ms(entry["started_at"], line["at"])
    return entries
