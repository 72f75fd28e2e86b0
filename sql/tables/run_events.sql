-- RunCompleted and RunStatusChanged events, one row each.
CREATE TABLE run_events (
    dedupe_key BIGINT NOT NULL,          -- 64-bit hash of (workspace, event_id)
    workspace VARCHAR,                   -- lower-cased ARM id of the workspace (topic / source)
    workspace_name VARCHAR,
    event_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    subject VARCHAR,
    event_time TIMESTAMPTZ NOT NULL,
    run_id VARCHAR NOT NULL,
    experiment_id VARCHAR,
    experiment_name VARCHAR,
    run_type VARCHAR,
    status VARCHAR NOT NULL,             -- AML spelling; RunCompleted without runStatus = Completed
    status_raw VARCHAR,                  -- runStatus as sent
    status_rank TINYINT NOT NULL,        -- lifecycle order, terminal highest (tie-break at equal times)
    parent_run_id VARCHAR,               -- runTags azureml.pipelinerunid
    published_pipeline_id VARCHAR,       -- runProperties/runTags azureml.pipelineid
    compute_target_type VARCHAR,         -- runProperties computeTargetType
    step_type VARCHAR,                   -- runProperties stepType
    run_tags VARCHAR NOT NULL,           -- JSON object as sent (values kept as-is)
    run_properties VARCHAR NOT NULL,     -- JSON object as sent (values kept as-is)
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
