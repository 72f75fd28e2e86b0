"""Reading the warehouse: DuckDB connections with the views (connection.py) and result
formats (formats.py)."""
