-- One row per registered model version (per workspace).
CREATE VIEW models AS
SELECT
    model_name,
    model_version,
    min(event_time) AS registered_at,
    first(model_tags ORDER BY event_time DESC, event_id DESC) AS tags,
    first(model_properties ORDER BY event_time DESC, event_id DESC) AS properties,
    workspace,
    first(workspace_name) FILTER (WHERE workspace_name IS NOT NULL) AS workspace_name,
    count(*) AS registrations
FROM model_registrations
GROUP BY workspace, model_name, model_version;
