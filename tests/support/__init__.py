"""Shared test code, no tests: corpus and event builders (events.py), row views (rows.py),
hypothesis strategies (strategies.py), the CLI as a process (cli.py), the worker as a
process (worker.py). Fixtures live in tests/conftest.py and devstack/pytest_plugin.py."""
