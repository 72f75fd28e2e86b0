"""The I/O side of amlwh: Event Hubs, checkpoints, the Parquet writer, the CLI."""
