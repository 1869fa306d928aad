-- anomaly 0.1.0: Random Cut Forest anomaly detection, KDA-compatible.
-- Built by the Makefile from src/sql/*.sql, in name order.

\echo Use "CREATE EXTENSION anomaly" to load this file. \quit
