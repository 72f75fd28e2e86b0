-- The model half of monitor_metrics over maintained state: the stored counts per minute,
-- plus the model events not folded in yet (consumer/query/state_views.py). Each event is
-- counted in one minute, so counts add up.
CREATE OR REPLACE VIEW internal.model_metrics AS
SELECT workspace, metric, "time", sum(value) AS value
FROM (
    SELECT * FROM kept.model_metrics
    UNION ALL BY NAME
    SELECT * FROM touched.model_metrics
)
GROUP BY ALL;
