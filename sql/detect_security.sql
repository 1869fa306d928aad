-- Detectors and hostile roles: code a detector's owner, or the owner of a
-- table a detector reads or writes, controls runs only as the detector's
-- owner, under SECURITY_RESTRICTED_OPERATION, and whatever it sets is
-- thrown away; the extension's own SQL keeps its pinned search_path and
-- schema-qualified operators; admins see only their own detectors and
-- failures.  After every attack: no test role is superuser.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
DROP ROLE IF EXISTS dsec_adm, dsec_adm2, dsec_owner1;
RESET client_min_messages;
CREATE ROLE dsec_adm;
CREATE ROLE dsec_adm2;
CREATE ROLE dsec_owner1;
GRANT anomaly_admin TO dsec_adm, dsec_adm2;
CREATE SCHEMA dsec_a AUTHORIZATION dsec_adm;
CREATE SCHEMA dsec_o AUTHORIZATION dsec_owner1;

-- Who ran the planted code: every function below records here.
CREATE TABLE dsec_seen (what text, who name, super bool);
GRANT INSERT ON dsec_seen TO PUBLIC;
CREATE FUNCTION dsec_record(what text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.dsec_seen
	SELECT what, current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user
$$;
-- What the planted operators and checks do: record who ran them and, when
-- that was a superuser, make the role that planted them one.
CREATE FUNCTION dsec_trap(what text, planter name) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.dsec_record(what);
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', planter);
	END IF;
END $$;
-- Plants an operator =(int8, int8) in schema s, owned by the role that calls
-- this: it traps (dsec_trap) as what, for that role.
CREATE PROCEDURE dsec_plant_eq(s name, what text) LANGUAGE plpgsql AS $plant$
BEGIN
	EXECUTE pg_catalog.format($f$CREATE FUNCTION %I.eq(a int8, b int8) RETURNS bool LANGUAGE plpgsql AS $b$
BEGIN
	PERFORM public.dsec_trap(%L, %L);
	RETURN a OPERATOR(pg_catalog.=) b;
END $b$$f$, s, what, current_user);
	EXECUTE pg_catalog.format('CREATE OPERATOR %I.= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = %I.eq)',
		s, s);
END $plant$;
CREATE VIEW dsec_report AS
SELECT what, CASE WHEN super THEN 'A SUPERUSER' ELSE who::text END AS ran_as, count(*) AS calls
FROM dsec_seen GROUP BY 1, 2 ORDER BY 1, 2;
CREATE VIEW dsec_escalated AS
SELECT rolname FROM pg_roles WHERE rolname LIKE 'dsec\_%' AND rolsuper;

CREATE TABLE dsec_src (id int8 PRIMARY KEY, v int8);
GRANT SELECT ON dsec_src TO dsec_adm;

-- 1. A feature function that plants a search_path for the rest of the
-- session (set_config(..., false)), and an operator =(int8, int8) there
-- that makes dsec_adm superuser when a superuser uses it.
SET ROLE dsec_adm;
CREATE FUNCTION dsec_a.leak(v int8) RETURNS float8 LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.dsec_record('feature');
	PERFORM pg_catalog.set_config('search_path', 'dsec_a, pg_catalog', false);
	PERFORM pg_catalog.set_config('work_mem', '77kB', false);
	PERFORM pg_catalog.set_config('application_name', 'planted', false);
	RETURN v;
END $$;
CALL dsec_plant_eq('dsec_a', 'operator');
SELECT anomaly.create_detector('dsec_leak', 'public.dsec_src', ARRAY['dsec_a.leak(v)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10}');
RESET ROLE;
TRUNCATE dsec_seen;
INSERT INTO dsec_src SELECT g, g FROM generate_series(1, 5) g;
-- process() by a superuser: afterwards the session's settings are exactly
-- what they were (the owner's are thrown away), and no role escalated.
CREATE TEMP TABLE dsec_settings AS SELECT name, setting FROM pg_settings;
SELECT anomaly.process('dsec_leak') AS consumed;
SELECT anomaly.process('dsec_leak') AS consumed;
SELECT s.name, b.setting AS before, s.setting AS after
FROM pg_settings s JOIN dsec_settings b USING (name)
WHERE s.setting IS DISTINCT FROM b.setting;
SELECT current_user = session_user AS same_user;
SELECT * FROM dsec_report;
SELECT * FROM dsec_escalated;
SELECT rows_scored, state FROM anomaly.detectors WHERE name = 'dsec_leak';

-- 2. A superuser whose own search_path puts dsec_a's operator first calls
-- process(): the extension's SQL (the orphan slot sweep, the rounds) does
-- not use it.
TRUNCATE dsec_seen;
SET search_path = dsec_a, pg_catalog, public;
INSERT INTO public.dsec_src SELECT g, g FROM pg_catalog.generate_series(6, 8) g;
SELECT anomaly.process('dsec_leak') AS consumed;
RESET search_path;
SELECT * FROM dsec_report;
SELECT * FROM dsec_escalated;

-- 3. A destination table owned by dsec_owner1, who has no admin role: its
-- triggers plant a search_path and an operator of dsec_owner1's.  They run
-- as the detector's owner, under SECURITY_RESTRICTED_OPERATION, and the
-- rest of the round does not meet what they planted.
CREATE TABLE dsec_o.dest (anomaly_score float8, source_key jsonb);
ALTER TABLE dsec_o.dest OWNER TO dsec_owner1;
SET ROLE dsec_owner1;
GRANT USAGE ON SCHEMA dsec_o TO dsec_adm;
GRANT INSERT ON dsec_o.dest TO dsec_adm;
CALL dsec_plant_eq('dsec_o', 'owner1 operator');
CREATE FUNCTION dsec_o.plant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.dsec_record(TG_WHEN || ' trigger');
	PERFORM pg_catalog.set_config('search_path', 'dsec_o, pg_catalog', false);
	RETURN NEW;
END $$;
CREATE TRIGGER plant BEFORE INSERT ON dsec_o.dest FOR EACH ROW EXECUTE FUNCTION dsec_o.plant();
CREATE TRIGGER plant_after AFTER INSERT ON dsec_o.dest FOR EACH ROW EXECUTE FUNCTION dsec_o.plant();
RESET ROLE;
SET ROLE dsec_adm;
SET search_path = dsec_a, public;
SELECT anomaly.create_detector('dsec_dest', 'public.dsec_src', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10, "destination": "dsec_o.dest"}');
RESET search_path;
RESET ROLE;
TRUNCATE dsec_seen;
INSERT INTO dsec_src SELECT g, g FROM generate_series(9, 11) g;
SELECT anomaly.process('dsec_dest') AS consumed;
SELECT anomaly.process('dsec_dest') AS consumed;
SELECT * FROM dsec_report;
SELECT * FROM dsec_escalated;
SELECT count(*) AS destination_rows FROM dsec_o.dest;
SELECT state, last_error FROM anomaly.detectors WHERE name = 'dsec_dest';
-- A deferred trigger would fire at commit, as whoever commits: PostgreSQL
-- refuses to queue one under SECURITY_RESTRICTED_OPERATION, so the
-- detector fails and nothing of the round is written.
SET ROLE dsec_owner1;
CREATE CONSTRAINT TRIGGER later AFTER INSERT ON dsec_o.dest
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dsec_o.plant();
RESET ROLE;
TRUNCATE dsec_seen;
INSERT INTO dsec_src VALUES (12, 12);
BEGIN;
SELECT anomaly.process('dsec_dest') AS consumed;
COMMIT;
SELECT state, last_error FROM anomaly.detectors WHERE name = 'dsec_dest';
SELECT count(*) AS destination_rows FROM dsec_o.dest;
SELECT * FROM dsec_report;
SELECT * FROM dsec_escalated;
SELECT anomaly.drop_detector('dsec_dest');

-- 4. Old rows converted after a column type change: the new type is a
-- domain whose CHECK calls a function of the source table's owner.  The
-- conversion runs as the detector's owner, not as the superuser.
CREATE TABLE dsec_o.src (id int8 PRIMARY KEY, v text);
ALTER TABLE dsec_o.src OWNER TO dsec_owner1;
SET ROLE dsec_owner1;
GRANT SELECT ON dsec_o.src TO dsec_adm;
CREATE FUNCTION dsec_o.check_v(v text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.dsec_trap('domain check', 'dsec_owner1');
	RETURN true;
END $$;
CREATE DOMAIN dsec_o.vtext AS text CHECK (dsec_o.check_v(VALUE));
GRANT USAGE ON TYPE dsec_o.vtext TO PUBLIC;
RESET ROLE;
SET ROLE dsec_adm;
SELECT anomaly.create_detector('dsec_conv', 'dsec_o.src', ARRAY['length(v)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10}');
RESET ROLE;
INSERT INTO dsec_o.src VALUES (1, 'a'), (2, 'bb');
SET ROLE dsec_owner1;
ALTER TABLE dsec_o.src ALTER COLUMN v TYPE dsec_o.vtext;
RESET ROLE;
TRUNCATE dsec_seen;
SELECT anomaly.process('dsec_conv') AS consumed;
SELECT state FROM anomaly.detectors WHERE name = 'dsec_conv';
-- The owner follows the error's hint: alter_detector, resume_detector.
SET ROLE dsec_adm;
SELECT anomaly.alter_detector('dsec_conv', features => ARRAY['length(v)']);
SELECT anomaly.resume_detector('dsec_conv');
RESET ROLE;
SELECT anomaly.process('dsec_conv') AS consumed;
SELECT rows_scored, rows_failed, state FROM anomaly.detectors WHERE name = 'dsec_conv';
SELECT * FROM dsec_report;
SELECT * FROM dsec_escalated;
SELECT anomaly.drop_detector('dsec_conv');

-- 5. What admins see: their own detectors and failures only (superusers:
-- all).  dsec_adm2 has a detector of its own with a failing row.
GRANT SELECT ON dsec_src TO dsec_adm2;
SET ROLE dsec_adm;
SELECT anomaly.create_detector('dsec_fail_a', 'public.dsec_src', ARRAY['1 / (v - 13)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10}');
RESET ROLE;
SET ROLE dsec_adm2;
SELECT anomaly.create_detector('dsec_fail_b', 'public.dsec_src', ARRAY['1 / (v - 14)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10}');
RESET ROLE;
INSERT INTO dsec_src VALUES (13, 13), (14, 14);
SELECT anomaly.process('dsec_fail_a') AS a, anomaly.process('dsec_fail_b') AS b;
SELECT detector, source_key, reason FROM anomaly.detector_failures
WHERE detector LIKE 'dsec\_fail\__' ORDER BY detector;
SET ROLE dsec_adm2;
SELECT detector, source_key, reason FROM anomaly.detector_failures ORDER BY detector;
SELECT name, owner FROM anomaly.detector_status ORDER BY name;
SELECT name FROM anomaly.detectors ORDER BY name;
-- A function in WHERE does not see the other rows (security barrier).
CREATE FUNCTION pg_temp.peek(n text) RETURNS bool LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'saw %', n;
	RETURN true;
END $$;
SELECT name FROM anomaly.detector_status WHERE pg_temp.peek(name);
RESET ROLE;
SET ROLE dsec_adm;
SELECT detector FROM anomaly.detector_failures ORDER BY detector;
SELECT name FROM anomaly.detector_status ORDER BY name;
-- The management functions are not callable from a detector's expressions.
SELECT anomaly.create_detector('dsec_nested', 'public.dsec_src',
	ARRAY['anomaly.process()::float8'], options => '{"number_of_trees": 5, "sub_sample_size": 10}');
RESET ROLE;
INSERT INTO dsec_src VALUES (15, 15);
SELECT anomaly.process('dsec_nested') AS consumed;
SELECT state, last_error FROM anomaly.detectors WHERE name = 'dsec_nested';
SELECT anomaly.drop_detector('dsec_nested');

SELECT anomaly.drop_detector('dsec_leak');
SELECT anomaly.drop_detector('dsec_fail_a');
SELECT anomaly.drop_detector('dsec_fail_b');
SELECT * FROM dsec_escalated;
SET client_min_messages = warning;
DROP VIEW dsec_report, dsec_escalated;
DROP TABLE dsec_src, dsec_seen CASCADE;
DROP FUNCTION dsec_trap(text, name), dsec_record(text);
DROP PROCEDURE dsec_plant_eq(name, text);
DROP SCHEMA dsec_a, dsec_o CASCADE;
DROP OWNED BY dsec_adm, dsec_adm2, dsec_owner1;
DROP ROLE dsec_adm, dsec_adm2, dsec_owner1;
RESET client_min_messages;
