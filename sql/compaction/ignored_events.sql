-- ignored_events: one row per key and reason (as the view).
SELECT * FROM source
QUALIFY row_number() OVER (PARTITION BY dedupe_key, reason ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index) = 1
ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
