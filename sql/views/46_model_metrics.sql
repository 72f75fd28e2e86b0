-- The model half of monitor_metrics: registrations and deployments per UTC minute.
CREATE VIEW internal.model_metrics AS
SELECT workspace, 'Model Register Succeeded' AS metric,
    date_trunc('minute', event_time) AS "time", count(*)::DOUBLE AS value
FROM model_registrations
GROUP BY ALL
UNION ALL
SELECT workspace, 'Model Deploy Succeeded' AS metric,
    date_trunc('minute', event_time) AS "time", count(DISTINCT event_id)::DOUBLE AS value
FROM model_deployments
GROUP BY ALL;
