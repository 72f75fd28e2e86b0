-- Finished runs per experiment and UTC day of ended_at, and the share that failed.
CREATE VIEW failure_rates AS
SELECT
    experiment_name,
    CAST(timezone('UTC', ended_at) AS DATE) AS day,
    count(*) AS finished,
    count(*) FILTER (WHERE status = 'Failed') AS failed,
    count(*) FILTER (WHERE status = 'Canceled') AS canceled,
    count(*) FILTER (WHERE status = 'Completed') AS completed,
    count(*) FILTER (WHERE status = 'Failed') / count(*) AS failure_rate
FROM runs
WHERE ended_at IS NOT NULL
GROUP BY experiment_name, CAST(timezone('UTC', ended_at) AS DATE);
