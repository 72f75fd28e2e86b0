"""Log lines: JSON fields, the text form, the terminal choice, levels, and no secrets."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest

from consumer.logs import configure_logging, redact

KEY = "c2VjcmV0a2V5Zm9ydGVzdHM9"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("azure", "uamqp"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_fields_and_the_coordinates():
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("amlwh.worker")
    log.warning("checkpoint of partition %s failed", "3",
                extra={"partition": "3", "offset": "1024", "sequence_number": 17, "subject": "/runs/r1"})
    log.info("plain")
    first, second = (json.loads(line) for line in lines(out))
    assert first == {"ts": first["ts"], "level": "WARNING", "logger": "amlwh.worker",
                     "message": "checkpoint of partition 3 failed", "partition": "3", "offset": "1024",
                     "sequence_number": 17, "subject": "/runs/r1"}
    assert first["ts"].endswith("Z") and datetime.fromisoformat(first["ts"].replace("Z", "+00:00"))
    assert set(second) == {"ts", "level", "logger", "message"}  # no empty coordinates


def test_json_lines_hold_a_traceback_as_text_on_one_line():
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("amlwh").exception("failed at line %d", 7, extra={"file": "a.ndjson", "line": 7})
    (line,) = lines(out)
    doc = json.loads(line)
    assert doc["file"] == "a.ndjson" and doc["line"] == 7 and doc["level"] == "ERROR"
    assert "Traceback" in doc["exc_info"] and "ValueError: boom" in doc["exc_info"]


def test_text_lines_append_the_coordinates_as_key_value():
    out = io.StringIO()
    configure_logging("INFO", "text", stream=out)
    logging.getLogger("amlwh.worker").warning("dead letter", extra={"partition": "0", "offset": "5",
                                                                      "sequence_number": 2})
    (line,) = lines(out)
    assert line.endswith(" WARNING amlwh.worker: dead letter partition=0 offset=5 sequence_number=2")


@pytest.mark.parametrize("stream, is_json", [(io.StringIO(), True), (Terminal(), False)])
def test_auto_writes_json_unless_stderr_is_a_terminal(stream, is_json):
    configure_logging("INFO", "auto", stream=stream)
    logging.getLogger("amlwh").info("hello")
    (line,) = lines(stream)
    if is_json:
        assert json.loads(line)["message"] == "hello"
    else:
        assert line.endswith(" INFO amlwh: hello") and not line.startswith("{")


def test_the_level_filters_and_the_sdk_stays_at_warning_unless_debug():
    out = io.StringIO()
    configure_logging("warning", "text", stream=out)
    logging.getLogger("amlwh").info("hidden")
    logging.getLogger("amlwh").warning("shown")
    assert [line.rsplit(": ", 1)[1] for line in lines(out)] == ["shown"]
    configure_logging("INFO", "text", stream=out)
    assert logging.getLogger("azure.eventhub").getEffectiveLevel() == logging.WARNING
    configure_logging(logging.DEBUG, "text", stream=out)
    assert logging.getLogger("azure.eventhub").getEffectiveLevel() == logging.DEBUG


def test_a_second_configuration_replaces_the_first_handler():
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "text", stream=first)
    configure_logging("INFO", "json", stream=second)
    logging.getLogger("amlwh").info("once")
    assert first.getvalue() == "" and len(lines(second)) == 1


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_connection_string_keys_never_reach_a_line(fmt):
    out = io.StringIO()
    configure_logging("DEBUG", fmt, stream=out)
    hub = f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={KEY};EntityPath=eh1"
    storage = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"
    sas = f"https://acct.blob.core.windows.net/cp?sv=2022-11-02&sig={KEY}&se=2030"
    log = logging.getLogger("azure.eventhub")
    log.debug("connecting with %s", hub)
    log.debug("storage %s", storage, extra={"subject": sas})
    try:
        raise RuntimeError(f"bad {storage}")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    assert KEY not in text
    assert "SharedAccessKey=***" in text and "AccountKey=***" in text and "sig=***" in text
    assert "SharedAccessKeyName=listen" in text  # the key's name is no secret


def test_redact_keeps_everything_but_the_secret_values():
    assert redact("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=abc=;EntityPath=e") == \
        "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=***;EntityPath=e"


def test_unknown_format_or_level_is_refused():
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml", stream=io.StringIO())
    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD", "text", stream=io.StringIO())


# ------------------------------------------------------------------ the settings, through the real CLI

def status_env(local_hub, azurite, container: str, **extra: str) -> dict:
    return {"AMLWH_EVENTHUB__CONNECTION_STRING": local_hub.connection_string("eh1"),
            "AMLWH_CHECKPOINT__CONNECTION_STRING": azurite.connection_string,
            "AMLWH_CHECKPOINT__CONTAINER": container, **extra}


@pytest.mark.integration
def test_the_cli_logs_as_the_logging_section_says(local_hub, azurite, checkpoint_container):
    from devstack.azurite import ACCOUNT_KEY
    from devstack.server import DEFAULT_KEY
    from tests.support.cli import amlwh

    env = status_env(local_hub, azurite, checkpoint_container, AMLWH_LOGGING__FORMAT="json")
    verbose = amlwh("-v", "status", env=env)  # -v: DEBUG, the SDKs' lines included
    records = [json.loads(line) for line in verbose.stderr.splitlines()]
    assert any(r["level"] == "DEBUG" and r["logger"].startswith("azure") for r in records)
    assert DEFAULT_KEY not in verbose.stderr and ACCOUNT_KEY not in verbose.stderr
    from_config = amlwh("status", env=dict(env, AMLWH_LOGGING__LEVEL="debug"))  # the level from settings
    assert any(json.loads(line)["level"] == "DEBUG" for line in from_config.stderr.splitlines())
    default = amlwh("status", env=env)
    assert default.stderr == "" and "total lag: 0 event(s)" in default.stdout  # INFO: the SDKs say nothing
    text = amlwh("-v", "status", env=dict(env, AMLWH_LOGGING__FORMAT="text"))
    assert " DEBUG " in text.stderr and not text.stderr.lstrip().startswith("{")
    wrong = amlwh("status", env=dict(env, AMLWH_LOGGING__FORMAT="xml"), check=False)
    assert wrong.returncode == 2 and "[logging] format" in wrong.stderr and "AMLWH_LOGGING__FORMAT" in wrong.stderr
