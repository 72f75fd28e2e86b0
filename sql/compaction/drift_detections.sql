-- drift_detections: the copy of each event the views pick, by monitor over time.
SELECT * FROM source
QUALIFY row_number() OVER (PARTITION BY workspace, event_id ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index) = 1
ORDER BY workspace, monitor_id, event_time, event_id
