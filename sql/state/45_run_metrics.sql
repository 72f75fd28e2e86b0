-- The run half of monitor_metrics over maintained state: the stored counts per minute and
-- dimensions, less what the touched runs contributed to them, plus what they contribute
-- now. Counts add up exactly; a group left at zero has no run in it and is not a row.
-- Only minutes from {since_minute} on can change (a touched run entered its statuses after
-- its creation), so only those are added up again.
CREATE OR REPLACE VIEW internal.run_metrics AS
SELECT * FROM kept.run_metrics WHERE "time" < {since_minute}
UNION ALL BY NAME
SELECT workspace, metric, "time", sum(value) AS value, "RunType", "ExperimentName", "ComputeType",
    "PipelineStepType", "PublishedPipelineId"
FROM (
    SELECT * FROM kept.run_metrics WHERE "time" >= {since_minute}
    UNION ALL BY NAME
    SELECT * REPLACE (-value AS value) FROM touched.retracted_metrics
    UNION ALL BY NAME
    SELECT * FROM touched.run_metrics
)
GROUP BY ALL
HAVING sum(value) > 0;
