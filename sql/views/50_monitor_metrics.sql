-- The Azure Monitor workspace metrics that events can reproduce, per UTC minute.
-- Run metrics count runs entering a status in that minute (run_status_history),
-- with the dimensions Azure Monitor uses; model metrics count events.
-- Not reproducible (docs/views.md, monitor_metrics): Errors, Warnings, Model Register
-- Failed, Model Deploy Started/Failed, and the quota/resource/traffic metrics.
CREATE VIEW monitor_metrics AS
SELECT metric, "time", value, "RunType", "ExperimentName", "ComputeType", "PipelineStepType",
    "PublishedPipelineId", workspace
FROM internal.run_metrics
UNION ALL BY NAME
SELECT metric, "time", value, NULL AS "RunType", NULL AS "ExperimentName", NULL AS "ComputeType",
    NULL AS "PipelineStepType", NULL AS "PublishedPipelineId", workspace
FROM internal.model_metrics;
