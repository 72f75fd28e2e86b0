"""The configuration's sources as plain values: the TOML file and the AMLWH_* environment.

`load_settings` (config.py) reads the file through here and validates everything with
the settings models. `amlwh query` and `views` need [warehouse] path only, and the models
cost ~0.25 s of imports (pydantic, pydantic_settings), about all the rest of a small query
takes. So `plain_warehouse_path` reads that one setting with tomllib and the environment,
by the precedence load_settings applies: env over file over default.
"""

from __future__ import annotations

import tomllib
from os import environ  # read here only; the knobs that set it are in tuning.py
from pathlib import Path
from typing import Any

from consumer.errors import ConfigError

ENV_PREFIX = "AMLWH_"
SECTIONS = ("warehouse", "filter", "backfill", "eventhub", "checkpoint", "identity", "ordering", "writer",
            "metrics", "watchdog", "compaction", "logging")
COMPRESSIONS = ("zstd", "snappy", "gzip", "none")
DEFAULT_WAREHOUSE = Path("./warehouse")
# [warehouse] path in Blob Storage / ADLS Gen2 (read-only for now: consumer/storage/remote.py)
REMOTE_SCHEMES = ("abfs://", "abfss://", "az://")


def is_remote_path(text: str) -> bool:
    return text.lower().startswith(REMOTE_SCHEMES)


def user_cache_dir() -> Path:
    """Where a remote warehouse's files are cached unless [warehouse] cache_dir says: the XDG
    cache folder (~/.cache by default), amlwh/ under it."""
    base = environ.get("XDG_CACHE_HOME") or ""
    return (Path(base) if Path(base).is_absolute() else Path.home() / ".cache") / "amlwh"


def read_config_file(path: Path | None, *, required: bool) -> tuple[Path | None, dict[str, Any]]:
    """(the file read, its content). No path, or a missing file that is not `required`:
    (None, {})."""
    toml_path = Path(path) if path is not None else None
    if toml_path is None:
        return None, {}
    if not toml_path.exists():
        if required:
            raise ConfigError(
                f"config file {toml_path} does not exist. Pass an existing file with "
                "--config, or omit --config to use ./config.toml or the defaults."
            )
        return None, {}
    try:
        return toml_path, tomllib.loads(toml_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{toml_path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {toml_path}: {exc.strerror}") from None


def plain_warehouse_path(path: Path | None, *, required: bool) -> Path | None:
    """[warehouse] path as load_settings(path, required=...) would give it, or None when
    the [warehouse] inputs are not plainly valid (an unknown key or section name, a value of
    the wrong kind, AMLWH_WAREHOUSE as JSON): load_settings then validates them and words
    the mistake. The other sections are not validated, so their mistakes stop no query."""
    _, content = read_config_file(path, required=required)
    if not set(content) <= set(SECTIONS):
        return None
    section = content.get("warehouse", {})
    if not isinstance(section, dict):
        return None
    # pydantic_settings matches names case-insensitively: the last of a name's spellings wins
    env = {name.lower(): value for name, value in environ.items()}
    whole = f"{ENV_PREFIX}warehouse".lower()  # the section as JSON
    if whole in env:
        return None
    values = dict(section)
    values.update((name.removeprefix(whole + "__"), value) for name, value in env.items()
                  if name.startswith(whole + "__"))
    if not set(values) <= {"path", "compression"}:
        return None
    if not isinstance(values.get("path", ""), str) or values.get("compression", "zstd") not in COMPRESSIONS:
        return None
    if is_remote_path(values.get("path", "")):
        return None  # a remote warehouse: its credentials and cache are read with the models
    return Path(values["path"]) if "path" in values else DEFAULT_WAREHOUSE
