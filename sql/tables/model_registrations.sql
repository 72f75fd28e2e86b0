-- ModelRegistered events.
CREATE TABLE model_registrations (
    dedupe_key BIGINT NOT NULL,          -- 64-bit hash of (workspace, event_id)
    workspace VARCHAR,                   -- lower-cased ARM id of the workspace (topic / source)
    workspace_name VARCHAR,
    event_id VARCHAR NOT NULL,
    subject VARCHAR,
    event_time TIMESTAMPTZ NOT NULL,
    model_name VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,      -- int or string on the wire, always text here
    model_tags VARCHAR NOT NULL,         -- JSON object
    model_properties VARCHAR NOT NULL,   -- JSON object
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
