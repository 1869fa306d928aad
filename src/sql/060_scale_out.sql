
-- Scale-out: detectors on several PostgreSQL servers ("scoring nodes") fed
-- by logical replication, each node one shard of the partition keys
-- (docs/scale-out.md).  PostgreSQL does the work (publications with row
-- filters, subscriptions); these functions make each step one call, and
-- move a key's model with it when the shards change.
--
-- The shard of a key.  A publication's row filter may use only built-in
-- immutable functions and operators, and the same key must land on the same
-- shard in the filter, in the users' routing tables and after a major
-- upgrade of any server.  hashtext() and hashint8() are not promised to
-- stay the same across major versions, so the hash is built from what is
-- defined outside PostgreSQL: exact numeric arithmetic for integer keys
-- (Knuth's multiplicative hash, the high 10 of 32 bits), MD5 (RFC 1321) for
-- text keys.  It gives one of 1024 buckets; a bucket's shard among n is
-- chosen so that going from n - 1 to n shards moves buckets only to the new
-- shard (about 1/n of each old shard's): bucket b is on shard k - 1 for the
-- largest k <= n whose draw md5(b || ':' || k) is a multiple of k, else on
-- shard 0.  Every shard gets 1/n of the buckets on average.

CREATE OR REPLACE FUNCTION shard_of_bucket(bucket integer, shards integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d bytea;
BEGIN
	IF bucket < 0 OR bucket > 1023 THEN
		RAISE EXCEPTION 'bucket must be between 0 and 1023' USING ERRCODE = '22023';
	END IF;
	IF shards < 1 OR shards > 1024 THEN
		RAISE EXCEPTION 'shards must be between 1 and 1024' USING ERRCODE = '22023';
	END IF;
	FOR k IN REVERSE shards..2 LOOP
		d := decode(md5(bucket::text || ':' || k::text), 'hex');
		IF mod(get_byte(d, 0)::bigint * 16777216 + get_byte(d, 1) * 65536
			   + get_byte(d, 2) * 256 + get_byte(d, 3), k) = 0 THEN
			RETURN k - 1;
		END IF;
	END LOOP;
	RETURN 0;
END
$$;
COMMENT ON FUNCTION shard_of_bucket(integer, integer)
IS 'the shard (0 to shards - 1) of one of the 1024 key buckets; n - 1 to n shards moves buckets only to the new shard';

CREATE OR REPLACE FUNCTION shard_of(key bigint, shards integer)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN @extschema@.shard_of_bucket(
	div(mod(mod(key::numeric * 2654435761, 4294967296) + 4294967296, 4294967296), 4194304)::integer,
	shards);
COMMENT ON FUNCTION shard_of(bigint, integer)
IS 'the shard (0 to shards - 1) of an integer partition key, as create_shard_publications routes it';

CREATE OR REPLACE FUNCTION shard_of(key text, shards integer)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN @extschema@.shard_of_bucket(
	((get_byte(decode(md5(key), 'hex'), 0) * 256 + get_byte(decode(md5(key), 'hex'), 1)) % 1024),
	shards);
COMMENT ON FUNCTION shard_of(text, integer)
IS 'the shard (0 to shards - 1) of a text partition key, as create_shard_publications routes it';

-- The row filter of one shard over column `key` of type key_type: the
-- bucket expression above, inline (a filter cannot call our functions),
-- and the shard's buckets as a constant array.
CREATE OR REPLACE FUNCTION shard_filter(key name, key_type regtype, shard integer, shards integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bucket text;
	buckets integer[];
BEGIN
	IF shards < 1 OR shards > 1024 THEN
		RAISE EXCEPTION 'shards must be between 1 and 1024' USING ERRCODE = '22023';
	END IF;
	IF shard < 0 OR shard >= shards THEN
		RAISE EXCEPTION 'shard must be between 0 and %', shards - 1 USING ERRCODE = '22023';
	END IF;
	IF key_type IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
		bucket := format('div(mod(mod(%I::numeric * 2654435761::numeric, 4294967296::numeric)'
						 ' + 4294967296::numeric, 4294967296::numeric), 4194304::numeric)', key);
	ELSIF key_type IN ('text'::regtype, 'character varying'::regtype) THEN
		bucket := format('((get_byte(decode(md5(%1$I::text), ''hex''), 0) * 256'
						 ' + get_byte(decode(md5(%1$I::text), ''hex''), 1)) %% 1024)', key);
	ELSE
		RAISE EXCEPTION 'a shard key must be smallint, integer, bigint, text or varchar, not %', key_type
			USING ERRCODE = '42804',
				  HINT = 'A row filter cannot convert other types to text; add a generated column of one of these types.';
	END IF;
	SELECT array_agg(b ORDER BY b) INTO buckets
	FROM generate_series(0, 1023) b
	WHERE @extschema@.shard_of_bucket(b, shards) = shard;
	IF buckets IS NULL THEN
		RETURN 'false';
	END IF;
	RETURN format('(%s = ANY (%L::%s))', bucket, buckets::text,
				  CASE WHEN bucket LIKE 'div(%' THEN 'numeric[]' ELSE 'integer[]' END);
END
$$;
COMMENT ON FUNCTION shard_filter(name, regtype, integer, integer)
IS 'the publication row filter (SQL) that selects one shard''s keys: for sources without the extension';

-- ---------------------------------------------------------------------------
-- On the source: one publication per shard, <prefix>_<shard>, of inserts
-- into `source` whose `key` is on that shard.  Called again with another
-- number of shards it re-filters them all in one transaction (the cut of a
-- reshard: rows committed before it go by the old shards, after it by the
-- new).  The table is locked against writers (SHARE) until the caller's
-- transaction ends, so that no transaction writing it straddles the cut.
-- prepare: create the missing publications matching nothing yet, leave the
-- others (a new node subscribes to its publication before the cut).
-- Runs as the caller: CREATE and ALTER PUBLICATION check ownership of the
-- table.
CREATE OR REPLACE FUNCTION create_shard_publications(
	source regclass,
	key name,
	shards integer,
	prefix name DEFAULT NULL,
	prepare boolean DEFAULT false,
	publish text DEFAULT 'insert')
RETURNS SETOF name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	key_type regtype;
	pub name;
	filter text;
	tables oid[];
	qsource text;
BEGIN
	IF source IS NULL OR key IS NULL OR shards IS NULL OR prepare IS NULL OR publish IS NULL THEN
		RAISE EXCEPTION 'source, key, shards, prepare and publish must not be null' USING ERRCODE = '22004';
	END IF;
	IF shards < 1 OR shards > 1024 THEN
		RAISE EXCEPTION 'shards must be between 1 and 1024' USING ERRCODE = '22023';
	END IF;
	IF publish !~ '^\s*(insert|update|delete|truncate)(\s*,\s*(insert|update|delete|truncate))*\s*$' THEN
		RAISE EXCEPTION 'publish must list insert, update, delete or truncate, comma-separated'
			USING ERRCODE = '22023';
	END IF;
	SELECT a.atttypid::regtype INTO key_type FROM pg_attribute a
	WHERE a.attrelid = source AND a.attname = key AND a.attnum > 0 AND NOT a.attisdropped;
	IF key_type IS NULL THEN
		RAISE EXCEPTION 'column "%" of % does not exist', key, source USING ERRCODE = '42703';
	END IF;
	IF NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = source), 'USAGE') THEN
		RAISE EXCEPTION 'must be the owner of table %', source USING ERRCODE = '42501';
	END IF;
	prefix := coalesce(prefix, (SELECT relname FROM pg_class WHERE oid = source) || '_shard');
	IF length(prefix) > 58 THEN
		RAISE EXCEPTION 'prefix must be at most 58 characters' USING ERRCODE = '22023';
	END IF;
	-- shrinking is not a re-filter: the keys of the dropped shards' nodes
	-- would have to move first (docs/scale-out.md)
	IF EXISTS (SELECT 1 FROM pg_publication p
			   WHERE p.pubname = prefix || '_' || shards::text) THEN
		RAISE EXCEPTION 'publication "%" exists: fewer shards than before is not supported', prefix || '_' || shards::text
			USING ERRCODE = '55000',
				  HINT = 'Move its keys and drop the publications of the removed shards first.';
	END IF;
	qsource := format('%I.%I', (SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
								WHERE c.oid = source),
					  (SELECT relname FROM pg_class WHERE oid = source));
	EXECUTE format('LOCK TABLE %s IN SHARE MODE', qsource);
	FOR s IN 0 .. shards - 1 LOOP
		pub := prefix || '_' || s::text;
		filter := @extschema@.shard_filter(key, key_type, s, shards);
		IF EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = pub) THEN
			SELECT array_agg(r.prrelid) INTO tables FROM pg_publication_rel r
			JOIN pg_publication p ON p.oid = r.prpubid WHERE p.pubname = pub;
			IF tables IS DISTINCT FROM ARRAY[source::oid]
			   OR (SELECT puballtables FROM pg_publication WHERE pubname = pub) THEN
				RAISE EXCEPTION 'publication "%" exists and does not publish % alone', pub, source
					USING ERRCODE = '42710';
			END IF;
			IF NOT prepare THEN
				EXECUTE format('ALTER PUBLICATION %I SET TABLE %s WHERE (%s)', pub, qsource, filter);
				EXECUTE format('ALTER PUBLICATION %I SET (publish = %L)', pub, publish);
			END IF;
		ELSE
			EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s WHERE (%s) WITH (publish = %L)',
						   pub, qsource, CASE WHEN prepare THEN 'false' ELSE filter END, publish);
		END IF;
		RETURN NEXT pub;
	END LOOP;
END
$$;
COMMENT ON FUNCTION create_shard_publications(regclass, name, integer, name, boolean, text)
IS 'on the source: one publication per shard of a table''s rows by key hash (again with more shards: the reshard cut)';

-- ---------------------------------------------------------------------------
-- On a scoring node: a subscription to one shard's publication.  Its slot
-- on the source is made beforehand (a logical slot cannot be created in a
-- function's transaction), named like the publication unless slot_name
-- says otherwise.  The connection string carries no password: libpq reads
-- it from the server's ~/.pgpass or a passfile= (PostgreSQL stores the
-- connection string in pg_subscription, readable by superusers).
CREATE OR REPLACE FUNCTION attach_scoring_node(
	subscription name,
	conninfo text,
	publication name,
	slot_name name DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	unscored text;
BEGIN
	IF subscription IS NULL OR conninfo IS NULL OR publication IS NULL THEN
		RAISE EXCEPTION 'subscription, conninfo and publication must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'must be superuser to attach a scoring node' USING ERRCODE = '42501',
			DETAIL = 'PostgreSQL 15 lets only superusers create subscriptions.';
	END IF;
	IF conninfo ~* '(^|[\s?&])(ssl)?password\s*=' OR conninfo ~* '^postgres(ql)?://[^/@]*:[^/@]*@' THEN
		RAISE EXCEPTION 'the connection string must not contain a password' USING ERRCODE = '22023',
			HINT = 'Put it in the server''s ~/.pgpass, or name a file with passfile=, or use certificates.';
	END IF;
	EXECUTE format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I'
				   ' WITH (create_slot = false, slot_name = %L, copy_data = false)',
				   subscription, conninfo, publication, coalesce(slot_name, publication));
	SELECT string_agg(r.srrelid::regclass::text, ', ') INTO unscored
	FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
	WHERE s.subname = subscription
	  AND NOT EXISTS (SELECT 1 FROM @extschema@.detectors d WHERE d.source = r.srrelid);
	IF unscored IS NOT NULL THEN
		RAISE WARNING 'no detector scores the rows of %', unscored
			USING HINT = 'Create the detector before the rows arrive: rows applied before it are not scored.';
	END IF;
	RETURN subscription;
END
$$;
COMMENT ON FUNCTION attach_scoring_node(name, text, name, name)
IS 'on a scoring node: subscribes to one shard''s publication (its slot made beforehand; no password in the connection string)';

-- ---------------------------------------------------------------------------
-- Results in one place.  On each node, the detector's scores also go to
-- anomaly_collect.scores_<node> (its destination, written in the same
-- transaction as anomaly.scores), published as anomaly_scores_<node>; the
-- collector subscribes to it into a partition of anomaly_collect.scores,
-- whose key is (node, id): each node numbers its own rows.

-- Schema anomaly_collect and the table `tab` in it (if it exists) must
-- belong to a superuser: the detector's owner writes into that table, and
-- another role's triggers there would run as that owner.
CREATE OR REPLACE FUNCTION _check_collect_schema(tab text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
			WHERE n.nspname = 'anomaly_collect') THEN
		RAISE EXCEPTION 'schema anomaly_collect must belong to a superuser' USING ERRCODE = '42501';
	END IF;
	IF to_regclass(tab) IS NOT NULL AND NOT (SELECT r.rolsuper FROM pg_class c
			JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = to_regclass(tab)) THEN
		RAISE EXCEPTION 'table % must belong to a superuser', tab USING ERRCODE = '42501';
	END IF;
END
$$;
COMMENT ON FUNCTION _check_collect_schema(text) IS 'internal: schema anomaly_collect and a table in it belong to a superuser';
REVOKE ALL ON FUNCTION _check_collect_schema(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION publish_scores(node name, detector text)
RETURNS regclass
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tab text;
	owner regrole;
BEGIN
	IF node IS NULL OR detector IS NULL THEN
		RAISE EXCEPTION 'node and detector must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'must be superuser to publish a node''s scores' USING ERRCODE = '42501';
	END IF;
	IF node !~ '^[a-z][a-z0-9_]{0,39}$' THEN
		RAISE EXCEPTION 'node must be 1 to 40 lower-case letters, digits or _, starting with a letter'
			USING ERRCODE = '22023';
	END IF;
	SELECT d.owner INTO owner FROM @extschema@.detectors d WHERE d.name = detector;
	IF owner IS NULL THEN
		RAISE EXCEPTION 'detector "%" does not exist', detector USING ERRCODE = '42704';
	END IF;
	tab := format('anomaly_collect.%I', 'scores_' || node);
	CREATE SCHEMA IF NOT EXISTS anomaly_collect;
	PERFORM @extschema@._check_collect_schema(tab);
	IF to_regclass(tab) IS NULL THEN
		EXECUTE format($t$CREATE TABLE %s (
			node text NOT NULL DEFAULT %L CHECK (node = %L),
			id bigint GENERATED ALWAYS AS IDENTITY,
			detector text NOT NULL, partition_key text, source_key jsonb,
			commit_lsn pg_lsn, commit_time timestamptz, rowtime timestamptz,
			features double precision[], anomaly_score double precision,
			anomaly_grade double precision, is_anomaly boolean,
			expected double precision[], explanation jsonb, scored_at timestamptz,
			PRIMARY KEY (node, id))$t$, tab, node, node);
		EXECUTE format('COMMENT ON TABLE %s IS %L', tab,
					   'scores of node ' || node || ', published to the collector (anomaly.publish_scores)');
		EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s WITH (publish = %L)',
					   'anomaly_scores_' || node, tab, 'insert');
		EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tab);
	END IF;
	-- a regrole's text is already a quoted identifier
	EXECUTE format('GRANT USAGE ON SCHEMA anomaly_collect TO %s', owner::text);
	EXECUTE format('GRANT INSERT ON %s TO %s', tab, owner::text);
	-- Every owner publishing into this node's table may insert only its own
	-- detector's rows: one policy per detector (named by a hash, as names
	-- may be longer than a policy's), so that one owner cannot pass rows off
	-- as another's to the collector (row level security is on from the
	-- table's creation).
	EXECUTE format('DROP POLICY IF EXISTS %I ON %s', 'detector_' || md5(detector), tab);
	EXECUTE format('CREATE POLICY %I ON %s FOR INSERT TO %s WITH CHECK (detector = %L)',
				   'detector_' || md5(detector), tab, owner::text, detector);
	PERFORM @extschema@.alter_detector(detector,
		options => jsonb_build_object('destination', tab));
	RETURN tab::regclass;
END
$$;
COMMENT ON FUNCTION publish_scores(name, text)
IS 'on a scoring node: the detector''s scores also go to anomaly_collect.scores_<node>, published as anomaly_scores_<node>';

CREATE OR REPLACE FUNCTION collect_scores(node name, conninfo text, slot_name name DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sub name;
BEGIN
	IF node IS NULL OR conninfo IS NULL THEN
		RAISE EXCEPTION 'node and conninfo must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'must be superuser to collect a node''s scores' USING ERRCODE = '42501',
			DETAIL = 'PostgreSQL 15 lets only superusers create subscriptions.';
	END IF;
	IF node !~ '^[a-z][a-z0-9_]{0,39}$' THEN
		RAISE EXCEPTION 'node must be 1 to 40 lower-case letters, digits or _, starting with a letter'
			USING ERRCODE = '22023';
	END IF;
	IF conninfo ~* '(^|[\s?&])(ssl)?password\s*=' OR conninfo ~* '^postgres(ql)?://[^/@]*:[^/@]*@' THEN
		RAISE EXCEPTION 'the connection string must not contain a password' USING ERRCODE = '22023',
			HINT = 'Put it in the server''s ~/.pgpass, or name a file with passfile=, or use certificates.';
	END IF;
	CREATE SCHEMA IF NOT EXISTS anomaly_collect;
	PERFORM @extschema@._check_collect_schema('anomaly_collect.scores');
	CREATE TABLE IF NOT EXISTS anomaly_collect.scores (
		node text NOT NULL,
		id bigint NOT NULL,
		detector text NOT NULL, partition_key text, source_key jsonb,
		commit_lsn pg_lsn, commit_time timestamptz, rowtime timestamptz,
		features double precision[], anomaly_score double precision,
		anomaly_grade double precision, is_anomaly boolean,
		expected double precision[], explanation jsonb, scored_at timestamptz,
		PRIMARY KEY (node, id)) PARTITION BY LIST (node);
	EXECUTE format('CREATE TABLE %s PARTITION OF anomaly_collect.scores FOR VALUES IN (%L)',
				   format('anomaly_collect.%I', 'scores_' || node), node);
	sub := 'anomaly_collect_' || node;
	EXECUTE format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I'
				   ' WITH (create_slot = false, slot_name = %L, copy_data = true)',
				   sub, conninfo, 'anomaly_scores_' || node,
				   coalesce(slot_name, ('anomaly_scores_' || node)::name));
	RETURN sub;
END
$$;
COMMENT ON FUNCTION collect_scores(name, text, name)
IS 'on the collector: subscribes to a node''s published scores, into a partition of anomaly_collect.scores';

REVOKE ALL ON FUNCTION create_shard_publications(regclass, name, integer, name, boolean, text),
	attach_scoring_node(name, text, name, name), publish_scores(name, text),
	collect_scores(name, text, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_shard_publications(regclass, name, integer, name, boolean, text)
	TO anomaly_admin;

-- ---------------------------------------------------------------------------
-- A detector's models as values (src/detect/models.c): a key that moves to
-- another node takes its model along.

CREATE OR REPLACE FUNCTION export_detector_models(detector text)
RETURNS TABLE (partition_key text, model rcf, points bigint)
AS 'MODULE_PATHNAME', 'anomaly_export_detector_models'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION export_detector_models(text)
IS 'every partition key''s model (anomaly.rcf) of a detector as of its last round';

CREATE OR REPLACE FUNCTION import_detector_models(detector text, partition_keys text[], models rcf[],
									   replace boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'anomaly_import_detector_models'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION import_detector_models(text, text[], rcf[], boolean)
IS 'seeds a detector''s partition keys with models (from export_detector_models): their scores continue from them';

REVOKE ALL ON FUNCTION export_detector_models(text),
	import_detector_models(text, text[], rcf[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION export_detector_models(text),
	import_detector_models(text, text[], rcf[], boolean) TO anomaly_admin;
