"""plait's own logs (not the access log): readable text for people, JSON lines for machines.

``--log-format text`` (the default) writes ``TIME LEVEL LOGGER: MESSAGE``; a worker of
``plait sidecar --workers N`` writes ``TIME LEVEL [worker I] LOGGER: MESSAGE`` and the
supervisor ``[supervisor]``, so interleaved lines say which process wrote them.
``--log-format json`` writes one JSON object per line with ``time`` (UTC, ISO 8601 with
milliseconds), ``level``, ``logger``, ``message``, ``worker`` (the index, in a worker; the
supervisor says ``"supervisor"``), and ``exception`` (the formatted traceback) when the
record carries one. Everything goes to stderr, as the text always did.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Final

__all__ = ["LOG_FORMATS", "configure_logging"]

LOG_FORMATS: Final = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, worker: int | str | None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging(level: str, fmt: str, worker: int | str | None = None) -> None:
    """Set up the root logger once, for the whole process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        tag = ""
        if worker is not None:
            tag = f"[worker {worker}] " if isinstance(worker, int) else f"[{worker}] "
        text = f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(text))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
