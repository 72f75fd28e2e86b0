-- Bodies that could not become events, once each, with where they came from.
CREATE VIEW dead_letters AS
SELECT
    reason, error, payload_text, payload,
    source_kind, hub, partition_id, partition_offset, sequence_number, enqueued_at,
    source_file, source_line, batch_index, ingested_at
FROM store.dead_letters
QUALIFY row_number() OVER (
    PARTITION BY source_kind, hub, partition_id, sequence_number, source_file, source_line,
        batch_index, reason
    ORDER BY ingested_at
) = 1;

-- Messages the [filter] kept out, once each, with the reason.
CREATE VIEW ignored_events AS
SELECT
    reason, detail, event_id, event_type, workspace, subject, event_time,
    source_kind, hub, partition_id, partition_offset, sequence_number, enqueued_at,
    source_file, source_line, batch_index, ingested_at
FROM store.ignored_events
QUALIFY row_number() OVER (
    PARTITION BY dedupe_key, reason
    ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
) = 1;
