"""`amlwh backfill files`: input files cut into blocks (blocks.py), decoded chunk by chunk
(chunks.py) in this process or in decode processes (pool.py drives decode_process.py);
run.py ties them together."""
