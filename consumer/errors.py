"""Errors that end a command with a message for the operator instead of a traceback.

Every one derives from AmlwhError, which carries the process exit code; `cli.main`
catches the root once. They live apart from the modules that raise them so that the
CLI can catch them without importing DuckDB, Arrow and the decoder for every command.
Anything else that escapes a command is a bug and keeps its traceback.
"""


class AmlwhError(Exception):
    """Root of the operator-facing errors: str(error) says what was wrong, where, and
    what to do."""

    exit_code = 1
    label = ""  # printed before the message ("amlwh: <label>: <message>")


class ConfigError(AmlwhError):
    """A configuration mistake: a key, a file or a missing credential."""

    exit_code = 2
    label = "configuration error"


class BackfillInputError(AmlwhError):
    """A path that cannot be backfilled (missing, unreadable, unknown kind)."""

    exit_code = 2


class QueryRefused(AmlwhError):
    """The statement would write, or is not a single read-only statement."""

    exit_code = 2


class WarehouseWriteError(AmlwhError):
    """The warehouse path cannot take the flush; nothing of it was acknowledged."""


class DecodeProcessError(AmlwhError):
    """A backfill decode process failed or died; the message says which and why."""


class PreflightError(AmlwhError):
    """`amlwh run` checked what it needs before starting and one thing is wrong: the
    message names it, where it is, and what to change."""

    label = ""  # the message says it all: "amlwh: cannot reach the hub at ..."


class HubUnreachable(PreflightError):
    """No connection to the Event Hubs namespace (DNS, refused, no answer, TLS)."""


class HubCredentialsRefused(PreflightError):
    """The namespace refused the SAS key or the identity's token."""


class HubNotFound(PreflightError):
    """The namespace has no event hub of the configured name."""


class ConsumerGroupNotFound(PreflightError):
    """The event hub has no consumer group of the configured name."""


class CheckpointStoreError(PreflightError):
    """The checkpoint container is missing, unreachable, or refuses our credentials."""


class WarehouseUnwritable(PreflightError):
    """[warehouse] path cannot be created or written."""


class RemoteWarehouseError(AmlwhError):
    """A warehouse in Blob Storage cannot be listed or read: refused credentials, a missing
    container, an unreachable endpoint. The message names the account and container, never
    the key."""

    label = "remote warehouse"
