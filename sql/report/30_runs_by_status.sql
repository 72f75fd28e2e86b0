-- Chart "Runs by status": runs per UTC day they were created (their first event), split by
-- the status they are in now.
-- $since: first UTC day to include (NULL: all).
SELECT
    CAST(timezone('UTC', created_at) AS DATE) AS day,
    status,
    count(*) AS runs
FROM runs
WHERE CAST($since AS DATE) IS NULL
    OR CAST(timezone('UTC', created_at) AS DATE) >= CAST($since AS DATE)
GROUP BY ALL
ORDER BY day, status;
