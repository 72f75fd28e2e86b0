-- dead_letters: one row per message coordinates, array index and reason (as the view).
SELECT * FROM source
QUALIFY row_number() OVER (
    PARTITION BY source_kind, hub, partition_id, sequence_number, source_file, source_line,
        batch_index, reason
    ORDER BY ingested_at, dedupe_key) = 1
ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index
