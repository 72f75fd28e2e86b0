-- Every accepted event: its envelope, its own JSON and its coordinates.
-- Writers commit this table after the fact tables, so a raw row proves its facts are stored.
CREATE TABLE raw_events (
    dedupe_key BIGINT NOT NULL,          -- 64-bit hash of (workspace, event_id)
    workspace VARCHAR,                   -- lower-cased ARM id of the workspace (topic / source)
    workspace_name VARCHAR,
    event_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    schema_kind VARCHAR NOT NULL,        -- eventgrid | cloudevents | functions
    subject VARCHAR,
    event_time TIMESTAMPTZ NOT NULL,
    time_source VARCHAR NOT NULL,        -- event | enqueued (the event carried no time)
    data_version VARCHAR,
    quirks VARCHAR,                      -- comma-separated normalizations applied (docs/decoding.md)
    late BOOLEAN NOT NULL,               -- released after newer events of its subject
    payload VARCHAR NOT NULL,            -- the event's JSON
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
