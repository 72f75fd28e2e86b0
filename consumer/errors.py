"""Errors that end a command with a message for the operator instead of a traceback.

They live apart from the modules that raise them so that the CLI can catch them without
importing DuckDB, Arrow and the decoder for every command (`amlwh --help` and a backfill
do not load DuckDB)."""


class BackfillInputError(ValueError):
    """A path that cannot be backfilled (missing, unreadable, unknown kind)."""


class QueryRefused(ValueError):
    """The statement would write, or is not a single read-only statement."""


class WarehouseWriteError(RuntimeError):
    """The warehouse path cannot take the flush; nothing of it was acknowledged."""
