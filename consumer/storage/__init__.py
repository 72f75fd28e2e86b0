"""The Parquet warehouse: table schemas from the DDL (schema.py), where files live
(layout.py), rows to Arrow (arrow.py), Parquet encoding (parquet_files.py), durable
publication (durable.py), the stored-key index (key_index.py) and the sink (warehouse.py)."""
