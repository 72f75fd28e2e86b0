-- model_registrations: the copy of each event the views pick, by model and version.
SELECT * FROM source
QUALIFY row_number() OVER (PARTITION BY workspace, event_id ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index) = 1
ORDER BY workspace, model_name, model_version, event_time, event_id
