-- raw_events: the copy of each event the views pick, in event-time order.
SELECT * FROM source
QUALIFY row_number() OVER (PARTITION BY workspace, event_id ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index) = 1
ORDER BY event_time, workspace, event_id
