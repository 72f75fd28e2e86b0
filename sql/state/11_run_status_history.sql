-- run_status_history over maintained state, as runs (10_runs.sql): a touched run entered
-- every status at or after its creation.
CREATE OR REPLACE VIEW run_status_history AS
SELECT * FROM kept.run_status_history WHERE status_at < {since}
UNION ALL BY NAME
SELECT s.* FROM kept.run_status_history s
ANTI JOIN touched.stored_keys k ON s.run_id = k.run_id AND s.workspace IS NOT DISTINCT FROM k.workspace
WHERE s.status_at >= {since}
UNION ALL BY NAME
SELECT * FROM touched.run_status_history;
