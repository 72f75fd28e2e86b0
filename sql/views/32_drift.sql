-- One row per DatasetDriftDetected event.
CREATE VIEW drift AS
SELECT
    monitor_id,
    monitor_name,
    run_id,
    base_dataset_id,
    target_dataset_id,
    coefficient,
    window_start,
    window_end,
    event_time AS detected_at,
    workspace,
    workspace_name,
    subject,
    event_id
FROM drift_detections;
