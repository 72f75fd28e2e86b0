"""Azure Event Hubs and Blob checkpoints: SDK clients from settings (clients.py), the SDK's
BlobCheckpointStore and the checkpoint retry rule (checkpoints.py), `amlwh publish`
(publish.py)."""
