-- anomaly: Random Cut Forest anomaly detection, KDA-compatible.
-- The install script, built by the Makefile from src/sql/schema/*.sql and
-- src/sql/*.sql, in the order of their file names (src/sql/README.md).

\echo Use "CREATE EXTENSION anomaly" to load this file. \quit
