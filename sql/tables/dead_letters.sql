-- Bodies (or array elements) that could not become valid events.
CREATE TABLE dead_letters (
    dedupe_key BIGINT NOT NULL,          -- hash of the coordinates, index and reason
    reason VARCHAR NOT NULL,             -- machine-readable, see docs/decoding.md
    error VARCHAR NOT NULL,
    payload BLOB NOT NULL,               -- the raw bytes
    payload_text VARCHAR,                -- the same bytes as text when they are UTF-8
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
