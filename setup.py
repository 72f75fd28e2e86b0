"""Build of the one native module, transforms._linescan (everything else is in pyproject.toml).

Optional: without a C compiler the install still succeeds, and the backfill's fast path
runs in Python (same rows, slower; `amlwh backfill` says so when it starts).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("transforms._linescan", ["transforms/_linescan.c"], optional=True,
                  extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
    ],
)
