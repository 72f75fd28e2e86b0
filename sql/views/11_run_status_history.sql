-- One row per status a run entered, in event-time order. Consecutive events
-- with the same status (e.g. RunStatusChanged=Completed and RunCompleted) are
-- one entry, stamped with the first of them.
CREATE VIEW run_status_history AS
WITH ordered AS (
    SELECT
        workspace, run_id, status, event_time, status_rank, event_id, event_type,
        lag(status) OVER (
            PARTITION BY workspace, run_id ORDER BY event_time, status_rank, event_id
        ) AS prior_event_status
    FROM run_events
),
entries AS (
    SELECT * FROM ordered WHERE prior_event_status IS DISTINCT FROM status
)
SELECT
    workspace,
    run_id,
    row_number() OVER w AS entry_number,
    status,
    event_time AS status_at,
    lag(status) OVER w AS previous_status,
    lag(event_time) OVER w AS previous_status_at,
    (epoch_us(event_time) - epoch_us(lag(event_time) OVER w)) / 1e6 AS seconds_in_previous,
    event_id,
    event_type
FROM entries
WINDOW w AS (PARTITION BY workspace, run_id ORDER BY event_time, status_rank, event_id);
