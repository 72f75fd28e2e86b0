"""[warehouse] path read without the settings models agrees with load_settings."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.config import Settings, load_settings
from consumer.config_file import SECTIONS, plain_warehouse_path
from consumer.errors import ConfigError


@contextmanager
def environment(env: dict[str, str]):
    """Exactly these AMLWH_* variables (any spelling) while inside; the rest untouched."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.lower().startswith("amlwh_")]:
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _toml(content: dict[str, dict]) -> str:
    # json.dumps spells strings, integers, booleans and lists of them as TOML does
    return "".join(f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
                   for name, table in content.items())


def outcome(load, path: Path | None, required: bool):
    try:
        return "ok", load(path, required=required)
    except ConfigError as exc:
        return "error", str(exc)


def check_agreement(env: dict[str, str], text: str | None, *, required: bool = False) -> None:
    with tempfile.TemporaryDirectory() as folder, environment(env):
        path = Path(folder) / "config.toml"
        if text is not None:
            path.write_text(text)
        light, value = outcome(plain_warehouse_path, path, required)
        if light == "ok" and any(name.lower() == "amlwh_warehouse" for name in env):
            assert value is None  # the section as JSON: load_settings reads it
            return
        full, settings_or_message = outcome(load_settings, path, required)
    if light == "error":  # the file cannot be read: the same message
        assert (full, settings_or_message) == ("error", value)
    elif value is not None:
        if full == "ok":
            assert value == settings_or_message.warehouse.local_path
        else:  # a mistake in a section `query` does not read
            assert "warehouse" not in settings_or_message.lower()
    else:  # not plainly valid: load_settings says what is wrong, or a remote warehouse's settings
        assert full == "error" or settings_or_message.warehouse.remote


ENV = {"AMLWH_WAREHOUSE__PATH": "/from/env"}
FILE = '[warehouse]\npath = "/from/file"\n'


@pytest.mark.parametrize("env, text, required, expected", [
    ({}, None, False, Path("warehouse")),  # no file: the default
    ({}, FILE, False, Path("/from/file")),
    (ENV, FILE, False, Path("/from/env")),  # env over file
    (ENV, None, False, Path("/from/env")),
    ({"amlwh_Warehouse__PATH": "/any/case"}, FILE, False, Path("/any/case")),
    ({}, '[warehouse]\ncompression = "gzip"\n', False, Path("warehouse")),  # a [warehouse] without path
    ({}, '[backfill]\nbatch_rows = 5\n', False, Path("warehouse")),
    ({}, FILE + '[backfill]\nbatch_rows = -5\n', False, Path("/from/file")),  # not a [warehouse] mistake
    ({}, '[warehouse]\npath = ""\n', False, Path(".")),
    ({"AMLWH_WAREHOUSE__PATH": "/env"}, '[warehouse]\npath = 1\n', False, Path("/env")),  # overridden
    ({}, '[warehouse]\npaht = "x"\n', False, None),
    ({}, '[warehouse]\npath = 1\n', False, None),
    ({}, 'warehouse = "x"\n', False, None),
    ({}, '[wharehouse]\npath = "/typo"\n', False, None),
    ({"AMLWH_WAREHOUSE__COMPRESSION": "lz4"}, None, False, None),
    ({"AMLWH_WAREHOUSE__PAHT": "x"}, None, False, None),
    ({"AMLWH_WAREHOUSE": '{"path": "/json"}'}, None, False, None),
    ({}, '[warehouse]\npath = "abfs://data/wh/prod"\n', False, None),  # remote: read with the models
    ({"AMLWH_WAREHOUSE__PATH": "AZ://data"}, FILE, False, None),
    ({}, None, True, "does not exist"),  # an explicit --config that is missing
    ({}, "[warehouse\npath = 1", False, "is not valid TOML"),
])
def test_the_plain_reader_agrees_with_load_settings(env, text, required, expected):
    check_agreement(env, text, required=required)
    with tempfile.TemporaryDirectory() as folder, environment(env):
        path = Path(folder) / "config.toml"
        if text is not None:
            path.write_text(text)
        if isinstance(expected, str):
            with pytest.raises(ConfigError, match=expected):
                plain_warehouse_path(path, required=required)
        else:
            assert plain_warehouse_path(path, required=required) == expected


path_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x7f"), max_size=12)
warehouse_value = st.one_of(path_text, st.sampled_from(["zstd", "gzip", "lz4", "ZSTD"]), st.integers(),
                            st.booleans(), st.lists(path_text, max_size=2))
section = st.dictionaries(st.sampled_from(["path", "compression", "paht"]), warehouse_value, max_size=3)
other_section = st.dictionaries(st.sampled_from(["batch_rows", "workers", "unknown"]),
                                st.integers(-2, 300_000), max_size=2)
file_content = st.dictionaries(st.sampled_from(["warehouse", "backfill", "wharehouse"]),
                               st.one_of(section, other_section), max_size=3)
env_name = st.sampled_from(["AMLWH_WAREHOUSE__PATH", "amlwh_warehouse__path", "AMLWH_WAREHOUSE__COMPRESSION",
                            "AMLWH_WAREHOUSE__PAHT", "AMLWH_BACKFILL__BATCH_ROWS", "AMLWH_WAREHOUSE"])
env_value = st.one_of(path_text, st.sampled_from(["zstd", "snappy", "lz4", '{"path": "/json"}', "7", "-1"]))


@settings(max_examples=150, deadline=None)
@given(env=st.dictionaries(env_name, env_value, max_size=3),
       content=st.none() | file_content, required=st.booleans())
def test_the_plain_reader_agrees_with_load_settings_on_any_inputs(env, content, required):
    check_agreement(env, None if content is None else _toml(content), required=required)


def test_the_reader_knows_every_section_of_the_settings():
    assert set(SECTIONS) == set(Settings.model_fields)


def test_a_remote_path_keeps_its_url_and_is_refused_where_a_folder_is_needed():
    with tempfile.TemporaryDirectory() as folder, environment({"AMLWH_WAREHOUSE__PATH": "abfs://data//wh/prod"}):
        warehouse = load_settings(Path(folder) / "none.toml").warehouse
    assert warehouse.remote and warehouse.path == "abfs://data//wh/prod"
    with pytest.raises(ConfigError, match="a Blob Storage URL, where a local folder is needed"):
        warehouse.local_path
    with environment({}):
        assert load_settings(None).warehouse.local_path == Path("warehouse")
