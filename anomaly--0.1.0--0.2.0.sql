-- anomaly 0.1.0 -> 0.2.0
--
-- Run by ALTER EXTENSION anomaly UPDATE.  Brings an installation of 0.1.0
-- to the objects, grants and settings a fresh install of 0.2.0 has; the
-- upgrade test (test/t/090_upgrade.pl) compares the two catalog by catalog.

\echo Use "ALTER EXTENSION anomaly UPDATE" to load this file. \quit
