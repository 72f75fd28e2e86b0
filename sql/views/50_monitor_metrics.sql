-- The Azure Monitor workspace metrics that events can reproduce, per UTC minute.
-- Run metrics count runs entering a status in that minute (run_status_history),
-- with the dimensions Azure Monitor uses; model metrics count events.
-- Not reproducible (docs/views.md, monitor_metrics): Errors, Warnings, Model Register
-- Failed, Model Deploy Started/Failed, and the quota/resource/traffic metrics.
CREATE VIEW monitor_metrics AS
WITH metric_names(status, metric) AS (
    VALUES
        ('NotStarted', 'Not Started Runs'),
        ('Starting', 'Starting Runs'),
        ('Provisioning', 'Provisioning Runs'),
        ('Preparing', 'Preparing Runs'),
        ('Queued', 'Queued Runs'),
        ('Running', 'Started Runs'),
        ('Finalizing', 'Finalizing Runs'),
        ('CancelRequested', 'Cancel Requested Runs'),
        ('Completed', 'Completed Runs'),
        ('Failed', 'Failed Runs'),
        ('Canceled', 'Cancelled Runs'),
        ('NotResponding', 'Not Responding Runs')
),
run_metrics AS (
    SELECT
        h.workspace,
        m.metric,
        date_trunc('minute', h.status_at) AS "time",
        count(*)::DOUBLE AS value,
        CASE lower(r.run_type)
            WHEN 'azureml.pipelinerun' THEN 'PipelineRun'
            WHEN 'azureml.steprun' THEN 'StepRun'
            WHEN 'azureml.reusedsteprun' THEN 'ReusedStepRun'
            ELSE 'Experiment'
        END AS "RunType",
        r.experiment_name AS "ExperimentName",
        r.compute_target_type AS "ComputeType",
        r.step_type AS "PipelineStepType",
        r.published_pipeline_id AS "PublishedPipelineId"
    FROM run_status_history h
    JOIN metric_names m ON m.status = h.status
    JOIN runs r ON r.run_id = h.run_id AND r.workspace IS NOT DISTINCT FROM h.workspace
    GROUP BY ALL
),
model_metrics AS (
    SELECT workspace, 'Model Register Succeeded' AS metric,
        date_trunc('minute', event_time) AS "time", count(*)::DOUBLE AS value
    FROM model_registrations
    GROUP BY ALL
    UNION ALL
    SELECT workspace, 'Model Deploy Succeeded' AS metric,
        date_trunc('minute', event_time) AS "time", count(DISTINCT event_id)::DOUBLE AS value
    FROM model_deployments
    GROUP BY ALL
)
SELECT metric, "time", value, "RunType", "ExperimentName", "ComputeType", "PipelineStepType",
    "PublishedPipelineId", workspace
FROM run_metrics
UNION ALL BY NAME
SELECT metric, "time", value, NULL AS "RunType", NULL AS "ExperimentName", NULL AS "ComputeType",
    NULL AS "PipelineStepType", NULL AS "PublishedPipelineId", workspace
FROM model_metrics;
