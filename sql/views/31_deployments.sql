-- One row per model deployed by a ModelDeployed event.
CREATE VIEW deployments AS
SELECT
    service_name,
    compute_type,
    event_time AS deployed_at,
    model_name,
    model_version,
    model_ordinal,
    service_tags,
    service_properties,
    workspace,
    workspace_name,
    event_id
FROM model_deployments;
