-- runs over maintained state (consumer/query/state_views.py): the stored rows of runs that
-- no new event touched, and the touched runs recomputed from all their events. A touched
-- run was created at or after {since} (the earliest creation among them), so the stored
-- rows created before it are kept without a look at the touched keys; the others are
-- checked against touched.stored_keys, the touched runs that the state holds.
CREATE OR REPLACE VIEW runs AS
SELECT * FROM kept.runs WHERE created_at < {since}
UNION ALL BY NAME
SELECT s.* FROM kept.runs s
ANTI JOIN touched.stored_keys k ON s.run_id = k.run_id AND s.workspace IS NOT DISTINCT FROM k.workspace
WHERE s.created_at >= {since}
UNION ALL BY NAME
SELECT * FROM touched.runs;
