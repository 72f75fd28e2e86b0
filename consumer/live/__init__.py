"""`amlwh run`: the long-running worker (worker.py) and what it is made of: a pipeline per
claimed partition (partition.py), the flush cycle (flush_cycle.py), spilled bodies
(spill.py), provisional files (provisional.py) and the metrics endpoint (metrics.py)."""
