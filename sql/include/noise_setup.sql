-- Set-up of the regression tests that score generated series (grading.sql,
-- transform.sql include it with \i): the extension, floats printed with
-- their default digits, and noise(i), deterministic noise in [-0.5, 0.5).
-- Not a test itself: pg_regress runs sql/*.sql only.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
SET extra_float_digits = 0;
CREATE OR REPLACE FUNCTION noise(i integer) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$ SELECT ((hashint4(i)::bigint & 65535) / 65536.0) - 0.5 $$;
