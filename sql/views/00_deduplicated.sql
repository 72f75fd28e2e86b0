-- One row per event. Delivery is at-least-once and files are append-only, so
-- the same (workspace, event id) can be stored more than once (redelivery,
-- a crash between commit and checkpoint, an overlapping backfill). Every
-- public view reads through these, which is what makes results exactly-once.
-- The earliest committed copy wins; the ordering is total so the choice is stable.
-- `provisional` rows (events still in a live worker's reorder buffer, see
-- consumer/live/provisional.py) count only while no committed copy exists.
CREATE VIEW raw_events AS
SELECT * FROM store.raw_events
QUALIFY row_number() OVER (
    PARTITION BY workspace, event_id
    ORDER BY provisional, ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
) = 1;

CREATE VIEW run_events AS
SELECT * FROM store.run_events
QUALIFY row_number() OVER (
    PARTITION BY workspace, event_id
    ORDER BY provisional, ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
) = 1;

CREATE VIEW model_registrations AS
SELECT * FROM store.model_registrations
QUALIFY row_number() OVER (
    PARTITION BY workspace, event_id
    ORDER BY provisional, ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
) = 1;

CREATE VIEW model_deployments AS
SELECT * FROM store.model_deployments
QUALIFY row_number() OVER (
    PARTITION BY workspace, event_id, model_ordinal
    ORDER BY provisional, ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
) = 1;

CREATE VIEW drift_detections AS
SELECT * FROM store.drift_detections
QUALIFY row_number() OVER (
    PARTITION BY workspace, event_id
    ORDER BY provisional, ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
) = 1;
