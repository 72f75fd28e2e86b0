"""Maintenance of a warehouse: compaction of its partitions and the deletion of the files
compaction replaced."""
