"""Reading a Server-Sent Events stream line by line (the client side: `sagactl watch`,
and the tests), as the HTML standard's event stream parser does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class EventParser:
    """Feed it the stream's lines (without their line ends); it returns each event as
    its blank line completes it. Comments (keep-alives) and `retry:` give nothing."""

    last_id: str | None = None
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> ServerEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerEvent(self._event or "message", "\n".join(self._data), self.last_id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None
