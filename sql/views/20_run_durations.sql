-- Duration statistics of finished runs (terminal status, known start and end),
-- per (experiment_name, run_type) across the accepted workspaces.
CREATE VIEW run_durations AS
SELECT
    experiment_name,
    run_type,
    count(*) AS runs,
    quantile_cont(duration_s, 0.5) AS p50_s,
    quantile_cont(duration_s, 0.95) AS p95_s,
    max(duration_s) AS max_s,
    -- summed as exact integer microseconds: a float avg depends on row order,
    -- and the same events must give the same figures however they arrived
    sum(epoch_us(ended_at) - epoch_us(started_at)) / count(*) / 1e6 AS mean_s,
    min(duration_s) AS min_s
FROM runs
WHERE ended_at IS NOT NULL AND duration_s IS NOT NULL
GROUP BY experiment_name, run_type;
