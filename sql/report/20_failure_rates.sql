-- Chart "Failure rate": the `failure_rates` view (finished runs per experiment and UTC day
-- of ended_at; failed / finished, canceled runs in the denominator).
-- $since: first UTC day to include (NULL: all).
SELECT
    coalesce(experiment_name, '(no experiment)') AS experiment,
    day,
    finished,
    failed,
    canceled,
    completed,
    failure_rate
FROM failure_rates
WHERE CAST($since AS DATE) IS NULL OR day >= CAST($since AS DATE)
ORDER BY experiment, day;
