-- Chart "Run duration": p50 and p95 of the duration of finished runs, per experiment and
-- UTC day the run ended (the day of `failure_rates`). Runs of every type count together;
-- `run_durations` splits them by run_type over all time.
-- $since: first UTC day to include (NULL: all).
SELECT
    coalesce(experiment_name, '(no experiment)') AS experiment,
    CAST(timezone('UTC', ended_at) AS DATE) AS day,
    count(*) AS runs,
    quantile_cont(duration_s, 0.5) AS p50_s,
    quantile_cont(duration_s, 0.95) AS p95_s
FROM runs
WHERE ended_at IS NOT NULL AND duration_s IS NOT NULL
    AND (CAST($since AS DATE) IS NULL
         OR CAST(timezone('UTC', ended_at) AS DATE) >= CAST($since AS DATE))
GROUP BY ALL
ORDER BY experiment, day;
