-- Chart "Data drift": the drift coefficient of each DatasetDriftDetected event, per monitor,
-- at the end of the window it measured (the detection time when the event has no window).
-- Monitors are named by dataDriftName (its id when the event has no name): that is the name
-- people know them by, and the threshold options use.
-- $since: first UTC day to include (NULL: all).
SELECT
    coalesce(monitor_name, monitor_id) AS monitor,
    coalesce(window_end, detected_at) AS measured_at,
    coefficient,
    window_start,
    window_end,
    detected_at,
    monitor_id
FROM drift
WHERE coefficient IS NOT NULL
    AND (CAST($since AS DATE) IS NULL
         OR CAST(timezone('UTC', coalesce(window_end, detected_at)) AS DATE) >= CAST($since AS DATE))
ORDER BY monitor, measured_at, monitor_id;
