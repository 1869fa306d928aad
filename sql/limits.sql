-- Limits (issue 12, findings 4, 8 and 9): rcf_train over NULL points, the
-- cap on a forest's memory (anomaly.max_forest_memory) when a forest is
-- created and when a model is decoded, the model parameter ranges shared by
-- SQL and the decoder, and a long rcf_update that statement_timeout cancels.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;

-- Finding 4: a NULL point alone, or a group of NULL points only, trains no
-- model: NULL, not a crash.
SELECT anomaly.rcf_train(NULL::float8[]) IS NULL AS no_model;
SELECT anomaly.rcf_train(NULL::float8[], 10, 20) IS NULL AS no_model;
SELECT anomaly.rcf_train(p) IS NULL AS no_model FROM (VALUES (NULL::float8[])) v(p) WHERE false;
SELECT g, anomaly.rcf_train(p ORDER BY i) IS NULL AS no_model,
	   anomaly.rcf_info(anomaly.rcf_train(p ORDER BY i)) ->> 'updates' AS updates
FROM (VALUES (1, 1, NULL::float8[]), (1, 2, NULL), (2, 1, NULL), (2, 2, ARRAY[1.5]),
			 (2, 3, NULL), (3, 1, ARRAY[2.0])) v(g, i, p)
GROUP BY g ORDER BY g;
-- As a window aggregate, the rows before the first point see NULL.
SELECT i, anomaly.rcf_train(p) OVER (ORDER BY i) IS NULL AS no_model
FROM (VALUES (1, NULL::float8[]), (2, NULL), (3, ARRAY[1.0]), (4, NULL)) v(i, p)
ORDER BY i;
-- A superuser may pair rcf_train's final function with another aggregate's
-- state (PostgreSQL refuses that to other roles): an error, not a crash.
CREATE AGGREGATE wrong_state(float8[]) (SFUNC = array_agg_array_transfn,
	STYPE = internal, FINALFUNC = anomaly._rcf_train_finalfn);
SELECT wrong_state(ARRAY[1.0]);
DROP AGGREGATE wrong_state(float8[]);

-- Finding 9: the cap.  64 MB by default, superuser-only.
SHOW anomaly.max_forest_memory;
CREATE ROLE limits_plain;
SET ROLE limits_plain;
SET anomaly.max_forest_memory = '100GB';
RESET ROLE;
DROP ROLE limits_plain;

-- Creating a forest: the issue's 1,000 trees x 1,000 samples x 1,024
-- dimensions, and smaller ones, through every SQL way in.
SELECT anomaly.random_cut_forest(array_fill(1.0::float8, ARRAY[1024]), 1000, 1000) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0, 2.0, 3.0], 1000, 1000) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest_with_explanation(ARRAY[1.0, 2.0, 3.0], 1000, 1000) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0, 2.0, 3.0], 1000, 1000) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(r, 1000, 1000) OVER (ORDER BY r.a)
FROM (SELECT 1.0::float8 AS a, 2.0::float8 AS b, 3.0::float8 AS c) r;
SELECT anomaly.rcf_train(ARRAY[1.0, 2.0, 3.0], 1000, 1000);
-- Under the cap: 500 trees x 1,000 samples x 1 value (about 40 MB).
SELECT anomaly.rcf_info(anomaly.rcf_train(ARRAY[1.0], 500, 1000)) ->> 'number_of_trees' AS trees;
-- The cap is the superuser's to move, both ways.
SET anomaly.max_forest_memory = '1MB';
SELECT anomaly.random_cut_forest(ARRAY[1.0]) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], 10, 100) OVER (ORDER BY t) FROM generate_series(1, 1) t;
RESET anomaly.max_forest_memory;

-- Detectors, at create and at alter.
CREATE TABLE lim_src (id bigserial PRIMARY KEY, a float8, b float8, c float8);
SELECT anomaly.create_detector('lim_big', 'lim_src', ARRAY['a', 'b', 'c'],
	options => '{"number_of_trees": 1000, "sub_sample_size": 1000}');
SELECT anomaly.create_detector('lim_small', 'lim_src', ARRAY['a', 'b', 'c'],
	options => '{"number_of_trees": 10}');
SELECT anomaly.alter_detector('lim_small',
	options => '{"number_of_trees": 1000, "sub_sample_size": 1000}');
SELECT options -> 'number_of_trees' AS trees FROM anomaly.detectors WHERE name = 'lim_small';
SELECT anomaly.drop_detector('lim_small');
DROP TABLE lim_src;

-- Decoding a model: refused before it is allocated.
CREATE TABLE lim_models AS
SELECT anomaly.rcf_train(ARRAY[x], 100, 1000 ORDER BY x) AS m FROM generate_series(1, 50) x;
SELECT (anomaly.rcf_info(m) ->> 'memory_bytes')::bigint BETWEEN 2000000 AND 8000000 AS arena_mb
FROM lim_models;
SET anomaly.max_forest_memory = '2MB';
SELECT anomaly.rcf_info(m) FROM lim_models;
SELECT anomaly.rcf_score(m, ARRAY[1.0]) FROM lim_models;
SELECT anomaly.rcf_update(m, ARRAY[1.0]) IS NOT NULL FROM lim_models;
SELECT m::text::anomaly.rcf IS NOT NULL FROM lim_models;
RESET anomaly.max_forest_memory;
SELECT anomaly.rcf_info(m) ->> 'updates' AS updates FROM lim_models;

-- Crafted models: a header asks for a forest; the rest is a forest with no
-- points (9 bytes a tree), so a few kB ask for gigabytes.  CRC-32C in
-- PL/pgSQL, to fix up the checksum as an attacker would.
CREATE FUNCTION crc32c(data bytea) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	crc bigint := 4294967295;
BEGIN
	FOR i IN 0 .. length(data) - 1 LOOP
		crc := crc # get_byte(data, i);
		FOR k IN 1 .. 8 LOOP
			IF crc & 1 = 1 THEN
				crc := (crc >> 1) # 2197175160;		-- 0x82F63B78
			ELSE
				crc := crc >> 1;
			END IF;
		END LOOP;
	END LOOP;
	RETURN crc # 4294967295;
END;
$$;
SELECT to_hex(crc32c('123456789')) AS check_value;	-- e3069283
CREATE FUNCTION le32(v bigint) RETURNS bytea LANGUAGE sql AS $$
	SELECT set_byte(set_byte(set_byte(set_byte('\x00000000'::bytea,
		0, (v & 255)::int), 1, ((v >> 8) & 255)::int),
		2, ((v >> 16) & 255)::int), 3, ((v >> 24) & 255)::int)
$$;
CREATE FUNCTION crafted(dims int, shingle int, trees int, samples int)
RETURNS text LANGUAGE sql AS $$
	WITH body AS (
		SELECT le32(dims) || le32(shingle) || le32(trees) || le32(samples) ||
			le32(greatest(samples / 4, 1)) ||
			'\x00000000006af840'::bytea ||				-- time_decay 100000
			'\x2a00000000000000'::bytea ||				-- seed
			decode(repeat('00', 24), 'hex') ||			-- no updates yet
			decode(repeat('00', 4 * dims * shingle), 'hex') ||	-- shingle
			'\x0000'::bytea ||							-- no points, no runs
			decode(repeat('0102030405060708' || '00', trees), 'hex') ||
			'\x00'::bytea AS b)							-- no sections
	SELECT translate(encode('\x5243464d01000000'::bytea || le32(crc32c(b)) || b, 'base64'),
					 E'\n', '')
	FROM body
$$;
-- The crafting is right: a small one decodes.
SELECT anomaly.rcf_info(crafted(2, 1, 3, 10)::anomaly.rcf) - 'seed' AS small_crafted;
-- The issue's 13 kB model (17 kB as text): sub_sample_size 4096, which SQL
-- never allows, asked for 50 GB.
SELECT length(crafted(1024, 1, 1000, 4096)) AS text_bytes;
SELECT crafted(1024, 1, 1000, 4096)::anomaly.rcf;
SELECT crafted(1, 31, 10, 100)::anomaly.rcf;
SELECT crafted(1, 1, 1001, 100)::anomaly.rcf;
-- Within SQL's ranges, but 11 GB: refused by the cap, before allocating.
SELECT crafted(1024, 1, 1000, 1000)::anomaly.rcf;
SELECT crafted(3, 1, 1000, 1000)::anomaly.rcf;
-- The same bytes through binary receive.
CREATE TABLE lim_raw (m bytea);
INSERT INTO lim_raw SELECT decode(crafted(1024, 1, 1000, 1000), 'base64');
\copy lim_raw TO 'results/limits_crafted.bin' (FORMAT binary)
CREATE TABLE lim_typed (m anomaly.rcf);
\copy lim_typed FROM 'results/limits_crafted.bin' (FORMAT binary)
SELECT count(*) AS stored FROM lim_typed;
DROP TABLE lim_raw, lim_typed;

-- Finding 8: rcf_update over a two-dimensional array checks for
-- interrupts between rows.  400,000 rows take seconds; with a 500 ms
-- statement_timeout the cancel must come from inside rcf_update (line 3),
-- not after it returned (line 4).
CREATE TABLE lim_rows AS
SELECT array_agg(ARRAY[(x % 97)::float8]) AS p FROM generate_series(1, 400000) x;
CREATE FUNCTION long_update(m anomaly.rcf, p float8[]) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	m := anomaly.rcf_update(m, p);
	RETURN 'finished';
EXCEPTION WHEN query_canceled THEN
	DECLARE
		ctx text;
		msg text;
	BEGIN
		GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT, msg = MESSAGE_TEXT;
		RETURN msg || ' / ' || CASE WHEN ctx LIKE '%line 3 at assignment%'
			THEN 'inside rcf_update' ELSE 'after rcf_update: ' || ctx END;
	END;
END;
$$;
SET statement_timeout = '500ms';
SELECT long_update((SELECT anomaly.rcf_train(ARRAY[1.0])), p) FROM lim_rows;
RESET statement_timeout;

DROP TABLE lim_models, lim_rows;
DROP FUNCTION crc32c(bytea), le32(bigint), crafted(int, int, int, int),
	long_update(anomaly.rcf, float8[]);
