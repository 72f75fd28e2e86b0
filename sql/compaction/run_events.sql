-- run_events: the copy of each event the views pick, one run's events together and in
-- event-time order, so that looking up a run reads few row groups.
SELECT * FROM source
QUALIFY row_number() OVER (PARTITION BY workspace, event_id ORDER BY ingested_at, source_kind, hub, partition_id, sequence_number, source_file, source_line, batch_index) = 1
ORDER BY workspace, run_id, event_time, status_rank, event_id
