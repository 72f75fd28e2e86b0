"""`amlwh run`: the long-running worker (worker.py) and what it is made of: the SDK's
partition callbacks (ownership.py), received batches in and rows out (batch_intake.py), the
flush timer (flush_timer.py), a pipeline per claimed partition (partition.py), the flush
cycle (flush_cycle.py), spilled bodies (spill.py), provisional files (provisional.py), health
and metrics (health.py, metrics.py), lag and the stall watchdog (lag.py, watchdog.py), and
the checks before it starts (preflight.py)."""
