-- Well-formed messages kept out of the tables by [filter], with the reason.
CREATE TABLE ignored_events (
    dedupe_key BIGINT NOT NULL,
    reason VARCHAR NOT NULL,             -- foreign_workspace | unknown_event_type | diagnostic_records
    detail VARCHAR NOT NULL,
    event_id VARCHAR,
    event_type VARCHAR,
    workspace VARCHAR,
    subject VARCHAR,
    event_time TIMESTAMPTZ,
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
