"""Log lines: JSON for machines, readable for people, the same fields in both.

`configure_logging(level, fmt)` sets up the root logger once per call (a later call replaces
the handler: the CLI configures defaults at start and again once the settings are read).
`fmt` is "json", "text" or "auto": JSON when stderr is not a terminal (a service manager, a
container runtime, a file), text when it is.

Coordinates ride on a record as `extra` fields with fixed names, so a JSON line can be
filtered by them and a text line shows them as key=value at its end:

    log.warning("checkpoint failed", extra={"partition": "3", "offset": "1024", "sequence_number": 17})

Secrets never reach a line: the formatters mask the key of anything shaped like a
connection string or a SAS token, whichever library logged it.

Only the standard library is imported at module level: every command, `query` included,
configures logging before it does anything else.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import datetime, timezone
from typing import IO

# extra fields a line may carry, in the order a text line shows them
FIELDS = ("partition", "offset", "sequence_number", "subject", "file", "line")
FORMATS = ("auto", "json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The Azure SDKs log every link, token and retry at INFO: theirs are kept at WARNING unless
# the level asked for is DEBUG.
SDK_LOGGERS = ("azure", "uamqp")

_SECRET = re.compile(r"(?i)\b(SharedAccessKey|AccountKey|SharedAccessSignature|sig)=([^;&\s\"']+)")


def redact(text: str) -> str:
    """`text` with the value of every key=secret pair of a connection string or SAS masked."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=***", text)


def _extras(record: logging.LogRecord) -> list[tuple[str, object]]:
    return [(name, record.__dict__[name]) for name in FIELDS
            if record.__dict__.get(name) is not None]


class TextFormatter(logging.Formatter):
    """The classic line, then the coordinates as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            head, sep, tail = line.partition("\n")  # after the message, before a traceback
            line = head + "".join(f" {k}={v}" for k, v in extras) + sep + tail
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, the extra
    fields present, and exc_info (the traceback as text) when there is one."""

    def __init__(self) -> None:
        super().__init__()
        import json  # here, not at import: text logging needs no JSON encoder

        self._dumps = json.dumps

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc)
        doc: dict[str, object] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, value in _extras(record):
            doc[name] = value if isinstance(value, (int, float, bool)) else redact(str(value))
        if record.exc_info:
            doc["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            doc["stack_info"] = redact(record.stack_info)
        return self._dumps(doc, ensure_ascii=False, default=str)


def wants_json(fmt: str, stream: IO) -> bool:
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (isatty is not None and isatty())
    return fmt == "json"


def configure_logging(level: str | int = "INFO", fmt: str = "auto", stream: IO | None = None) -> logging.Handler:
    """Route every logger to one handler on `stream` (stderr) at `level`; returns the handler."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose from {list(FORMATS)}")
    stream = sys.stderr if stream is None else stream
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level {level!r}: choose DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if wants_json(fmt, stream) else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    return handler
