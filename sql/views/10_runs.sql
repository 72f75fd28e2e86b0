-- One row per (workspace, run_id).
-- status: the status of the latest event by event time; at equal times the
--   later lifecycle status wins (status_rank puts terminal statuses last).
-- ended_at: when the run entered its final status, if that status is terminal
--   (the first event of the final stretch of that status, so a RunCompleted
--   arriving a moment after RunStatusChanged=Completed does not move it).
CREATE VIEW runs AS
WITH with_final AS (
    SELECT *,
        first_value(status) OVER (
            PARTITION BY workspace, run_id
            ORDER BY event_time DESC, status_rank DESC, event_id DESC
        ) AS final_status
    FROM run_events
),
with_last_other AS (
    SELECT *,
        max(CASE WHEN status <> final_status THEN event_time END)
            OVER (PARTITION BY workspace, run_id) AS last_other_at
    FROM with_final
),
per_run AS (
    SELECT
        workspace,
        run_id,
        any_value(final_status) AS status,
        first(experiment_id ORDER BY event_time DESC, status_rank DESC, event_id DESC)
            FILTER (WHERE experiment_id IS NOT NULL) AS experiment_id,
        first(experiment_name ORDER BY event_time DESC, status_rank DESC, event_id DESC)
            FILTER (WHERE experiment_name IS NOT NULL) AS experiment_name,
        first(run_type ORDER BY event_time DESC, status_rank DESC, event_id DESC)
            FILTER (WHERE run_type IS NOT NULL) AS run_type,
        first(parent_run_id ORDER BY event_time DESC, status_rank DESC, event_id DESC)
            FILTER (WHERE parent_run_id IS NOT NULL) AS parent_run_id,
        first(compute_target_type ORDER BY event_time DESC, status_rank DESC, event_id DESC)
            FILTER (WHERE compute_target_type IS NOT NULL) AS compute_target_type,
        first(step_type ORDER BY event_time DESC, status_rank DESC, event_id DESC)
            FILTER (WHERE step_type IS NOT NULL) AS step_type,
        first(published_pipeline_id ORDER BY event_time DESC, status_rank DESC, event_id DESC)
            FILTER (WHERE published_pipeline_id IS NOT NULL) AS published_pipeline_id,
        first(workspace_name) FILTER (WHERE workspace_name IS NOT NULL) AS workspace_name,
        min(event_time) AS created_at,
        min(event_time) FILTER (WHERE status = 'Running') AS started_at,
        min(event_time) FILTER (
            WHERE status = final_status AND (last_other_at IS NULL OR event_time >= last_other_at)
        ) AS final_status_at,
        max(event_time) AS last_event_at,
        count(*) AS events
    FROM with_last_other
    GROUP BY workspace, run_id
)
SELECT
    run_id,
    experiment_id,
    experiment_name,
    run_type,
    parent_run_id,
    status,
    created_at,
    started_at,
    CASE WHEN status IN ('Completed', 'Failed', 'Canceled') THEN final_status_at END AS ended_at,
    CASE WHEN status IN ('Completed', 'Failed', 'Canceled') AND started_at IS NOT NULL
        THEN (epoch_us(final_status_at) - epoch_us(started_at)) / 1e6 END AS duration_s,
    (epoch_us(started_at) - epoch_us(created_at)) / 1e6 AS queue_s,
    compute_target_type,
    step_type,
    workspace,
    workspace_name,
    published_pipeline_id,
    last_event_at,
    events
FROM per_run;
