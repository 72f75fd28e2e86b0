-- model_deployments: one row per (event, model ordinal), by service.
SELECT * FROM source
QUALIFY row_number() OVER (PARTITION BY workspace, event_id, model_ordinal ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index) = 1
ORDER BY workspace, service_name, event_time, event_id, model_ordinal
