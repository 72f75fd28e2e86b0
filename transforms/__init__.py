"""Pure decoding, validation, ordering and normalization of AML events.

Nothing in this package performs I/O, reads the wall clock or keeps global
mutable state: callers pass bytes, coordinates and `now` in, and get values out.
"""
