"""Analytics: read-only DuckDB SQL over copies of the event log and the read models.

Why under `infra/`: nothing here decides or projects anything. These modules move data out of
PostgreSQL (as Arrow, or as Parquet files on disk) and run analysts' SQL in an embedded engine,
which is infrastructure in the sense of the fixed layout (SPEC section 2): adapters around a
database, files and an engine. The read models they copy stay owned by `projections/`.

The one rule of the package: analysts' SQL never reaches the production PostgreSQL. Data is
copied out (`source`: one read-only, repeatable-read transaction per copy; `export`: Parquet
files), loaded into an in-process DuckDB (`engine`), and queries run there, in a sandbox
(`sandbox`: SELECT only, no file or network access, locked configuration, a time and a row
limit). `views` names what analysts see; `results` turns an answer into JSON, CSV or Parquet.
"""
