-- Chart "Model registrations and deployments": ModelRegistered and ModelDeployed events per
-- UTC day of their event time, each event once (a deployment naming two models is one
-- deployment; `deployments` has a row per model). The counts of the Azure Monitor metrics
-- Model Register Succeeded and Model Deploy Succeeded, per day.
-- $since: first UTC day to include (NULL: all).
WITH registered AS (
    SELECT CAST(timezone('UTC', event_time) AS DATE) AS day, count(*) AS n
    FROM model_registrations
    GROUP BY ALL
), deployed AS (
    SELECT CAST(timezone('UTC', deployed_at) AS DATE) AS day,
        count(DISTINCT (coalesce(workspace, ''), event_id)) AS n
    FROM deployments
    GROUP BY ALL
)
SELECT
    coalesce(registered.day, deployed.day) AS day,
    coalesce(registered.n, 0) AS registrations,
    coalesce(deployed.n, 0) AS deployments
FROM registered FULL OUTER JOIN deployed ON registered.day = deployed.day
WHERE CAST($since AS DATE) IS NULL OR coalesce(registered.day, deployed.day) >= CAST($since AS DATE)
ORDER BY day;
