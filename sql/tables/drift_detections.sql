-- DatasetDriftDetected events.
CREATE TABLE drift_detections (
    dedupe_key BIGINT NOT NULL,          -- 64-bit hash of (workspace, event_id)
    workspace VARCHAR,                   -- lower-cased ARM id of the workspace (topic / source)
    workspace_name VARCHAR,
    event_id VARCHAR NOT NULL,
    subject VARCHAR,
    event_time TIMESTAMPTZ NOT NULL,
    monitor_id VARCHAR NOT NULL,         -- dataDriftId
    monitor_name VARCHAR,
    run_id VARCHAR,
    base_dataset_id VARCHAR,
    target_dataset_id VARCHAR,
    coefficient DOUBLE,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    -- where the message came from (Event Hubs partition or file line) and when it was stored
    source_kind VARCHAR NOT NULL,        -- eventhub | file
    hub VARCHAR,                         -- <namespace>/<event hub> for eventhub rows
    partition_id VARCHAR,
    partition_offset VARCHAR,
    sequence_number BIGINT,
    enqueued_at TIMESTAMPTZ,
    source_file VARCHAR,
    source_line BIGINT,
    batch_index INTEGER,                 -- position inside a JSON-array body; NULL for a single object
    ingested_at TIMESTAMPTZ NOT NULL,
    event_date DATE NOT NULL             -- hive partition (UTC); not stored inside the files
);
