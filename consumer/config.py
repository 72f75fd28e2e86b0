"""The one settings object: config.toml, overridden by AMLWH_* environment variables.

Loaded once at the edge (the CLI) and passed down; transforms get plain values.
Nested keys use a double underscore in env names: [warehouse] path is
AMLWH_WAREHOUSE__PATH. Secrets (connection strings) are SecretStr so they never
print, and are meant to come from env or Azure credentials, not the file.

The file is read in config_file.py, which also reads [warehouse] path alone, without
these models, for the commands that need nothing else (`query`, `views`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from consumer.config_file import COMPRESSIONS, DEFAULT_WAREHOUSE, ENV_PREFIX, is_remote_path, read_config_file
from consumer.errors import ConfigError
from transforms.records import AML_EVENT_TYPES

_SECTION = ConfigDict(extra="forbid", frozen=True)


class WarehouseSettings(BaseModel):
    model_config = _SECTION
    # a local folder, or a Blob Storage / ADLS Gen2 URL (abfs://container/prefix, az://...).
    # A string, as Path would fold a URL's "//".
    path: str = str(DEFAULT_WAREHOUSE)
    compression: Literal[COMPRESSIONS] = "zstd"
    # a remote warehouse's credentials, named as [checkpoint]'s: a connection string (an
    # account key or a SAS), else account_url with an Azure AD token ([identity])
    connection_string: SecretStr | None = None
    account_url: str | None = None
    connection_verify: str | None = None  # CA bundle (PEM) for the storage account's TLS certificate
    cache_dir: Path | None = None  # where a remote warehouse's files are kept; default per user
    # where a writer to a remote warehouse stages its commits, spill and scratch: a folder of
    # its own is made inside (default: the system's temporary folder) and removed at exit
    work_dir: Path | None = None
    upload_patience_s: float = Field(default=300.0, gt=0)  # a commit rides out Blob outages this long

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value  # a Path given in code

    @property
    def remote(self) -> bool:
        return is_remote_path(self.path)

    @property
    def local_path(self) -> Path:
        """The warehouse folder, for code that reads or writes files directly (the commands
        take a URL's RemoteWarehouse or RemoteTarget instead)."""
        if self.remote:
            raise ConfigError(
                f"[warehouse] path is {self.path}, a Blob Storage URL, where a local folder is "
                "needed. Set [warehouse] path (AMLWH_WAREHOUSE__PATH) to a folder (a local copy: "
                "azcopy sync)")
        return Path(self.path)


class FilterSettings(BaseModel):
    model_config = _SECTION
    workspaces: tuple[str, ...] = ()
    event_types: tuple[str, ...] = AML_EVENT_TYPES

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {t.lower(): t for t in AML_EVENT_TYPES}
        unknown = [t for t in value if t.lower() not in known]
        if unknown:
            raise ValueError(
                f"unknown event type(s) {unknown}; choose from {list(AML_EVENT_TYPES)}"
            )
        return tuple(known[t.lower()] for t in value)


class BackfillSettings(BaseModel):
    model_config = _SECTION
    batch_rows: int = Field(200_000, gt=0, description="rows buffered before each commit")
    workers: int = Field(0, ge=0, description="decode processes; 0 = one per core for large inputs")


class EventHubSettings(BaseModel):
    model_config = _SECTION
    connection_string: SecretStr | None = None
    fully_qualified_namespace: str | None = None  # with an Azure AD token ([identity])
    # AMQP over TLS to this host:port instead of the namespace's own address (a private
    # endpoint, a TCP proxy, the local hub in tests); tokens and checkpoints keep the namespace
    custom_endpoint_address: str | None = None
    connection_verify: str | None = None  # CA bundle (PEM) for the hub's TLS certificate; default: certifi's
    name: str | None = None
    consumer_group: str = "$Default"
    # where a partition without a checkpoint starts: earliest (default: a warehouse must
    # not skip history), latest, or an ISO 8601 time
    starting_position: str = "earliest"
    prefetch: int = Field(300, gt=0)
    max_batch_size: int = Field(300, gt=0)
    max_wait_time_s: float = Field(1.0, gt=0)
    load_balancing_strategy: Literal["balanced", "greedy"] = "balanced"
    load_balancing_interval_s: float = Field(10.0, gt=0)
    ownership_expiration_s: float = Field(60.0, gt=0)
    owner_level: bool = False  # claim partitions with owner level 0 (kicks non-epoch readers)

    @field_validator("starting_position")
    @classmethod
    def _position(cls, value: str) -> str:
        if value.lower() in ("earliest", "latest"):
            return value.lower()
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be earliest, latest or an ISO 8601 time") from None
        return value


class CheckpointSettings(BaseModel):
    model_config = _SECTION
    connection_string: SecretStr | None = None
    account_url: str | None = None  # with an Azure AD token ([identity]) instead of a connection string
    container: str = "checkpoints"
    connection_verify: str | None = None  # CA bundle (PEM) for the storage account's TLS certificate


class IdentitySettings(BaseModel):
    """The Azure AD identity used with [eventhub] fully_qualified_namespace, [checkpoint]
    account_url and [warehouse] account_url: DefaultAzureCredential (environment, workload identity, managed identity,
    Azure CLI, ...). client_id picks a user-assigned managed (or workload) identity; unset,
    AZURE_CLIENT_ID does, else the system-assigned one."""

    model_config = _SECTION
    client_id: str | None = None


class OrderingSettings(BaseModel):
    model_config = _SECTION
    max_lateness_s: float = Field(30.0, ge=0)
    max_buffered_events: int = Field(
        50_000, gt=0, description="whole process, shared by the owned partitions; forces early release")
    max_future_skew_s: float = Field(300.0, ge=0, description="event times past enqueued+skew order as enqueued+skew")
    # deep buffers keep events as their message bodies; spill puts those bodies in files
    # under <warehouse>/_spill so memory does not grow with rate x lateness
    spill: bool = True


class WriterSettings(BaseModel):
    model_config = _SECTION
    max_rows: int = Field(20_000, gt=0)
    max_seconds: float = Field(2.0, gt=0)
    # flush sooner once no batch arrived for this long: a caught-up or paused stream
    # becomes durable (and checkpointed) without waiting out max_seconds
    idle_flush_s: float = Field(0.5, gt=0)
    # at every flush, also write the events the reorder buffers took since the last flush
    # as provisional files, so queries see events within a flush of arrival (consumer/live/provisional.py)
    provisional: bool = True


class MetricsSettings(BaseModel):
    model_config = _SECTION
    port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port for `run`; 0 = off")
    host: str = "0.0.0.0"
    # how often the worker asks the hub for each owned partition's last enqueued event, for
    # the lag metrics and the stall watchdog (received batches report it too, but only
    # when events arrive)
    lag_poll_s: float = Field(10.0, gt=0)


class WatchdogSettings(BaseModel):
    model_config = _SECTION
    # a partition that received nothing for stall_s while the hub enqueued past what it
    # received is stalled: the worker flushes, checkpoints and re-attaches its receiver
    enabled: bool = True
    stall_s: float = Field(60.0, gt=0)


class CompactionSettings(BaseModel):
    model_config = _SECTION
    # the live worker compacts (and folds new run events into the view state) in a child
    # process every interval_s, when it committed anything meanwhile
    auto: bool = True
    interval_s: float = Field(300.0, gt=0)
    min_files: int = Field(8, ge=2, description="the worker merges partitions with this many files")
    grace_s: float = Field(60.0, ge=0, description="replaced files are deleted this long after")
    memory_limit: str = "1GB"  # DuckDB's limit in a compaction; beyond it, it sorts on disk


class LoggingSettings(BaseModel):
    model_config = _SECTION
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # `-v` forces DEBUG
    # json: one object per line; text: readable lines; auto: json unless stderr is a terminal
    format: Literal["auto", "json", "text"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="forbid"
    )
    warehouse: WarehouseSettings = WarehouseSettings()
    filter: FilterSettings = FilterSettings()
    backfill: BackfillSettings = BackfillSettings()
    eventhub: EventHubSettings = EventHubSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    identity: IdentitySettings = IdentitySettings()
    ordering: OrderingSettings = OrderingSettings()
    writer: WriterSettings = WriterSettings()
    metrics: MetricsSettings = MetricsSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    compaction: CompactionSettings = CompactionSettings()
    logging: LoggingSettings = LoggingSettings()


def _env_name(loc: tuple) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc)


def load_settings(path: Path | None, *, required: bool = False) -> Settings:
    """Read `path` (TOML) and the environment. A missing default file means defaults."""
    toml_path, _ = read_config_file(path, required=required)

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if toml_path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
            return tuple(sources)

    try:
        return _FromFile()
    except ValidationError as exc:
        where = str(toml_path) if toml_path else "the defaults"
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            section = f"[{loc[0]}] {'.'.join(map(str, loc[1:]))}" if len(loc) > 1 else str(loc[0])
            lines.append(f"  {section}: {err['msg']} (set in {where} or env {_env_name(loc)})")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
