-- The run half of monitor_metrics: runs entering a status per UTC minute (from
-- run_status_history), with the dimensions Azure Monitor uses. Schema `internal` keeps
-- it out of the public list; maintained state keeps these rows (consumer/query/state_views.py).
CREATE VIEW internal.run_metrics AS
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
)
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
GROUP BY ALL;
