-- ---------------------------------------------------------------------------
-- Alert rules

-- Creates an alert rule over the scores of a detector.
CREATE OR REPLACE FUNCTION create_alert_rule(
	name text,
	detector text,
	destination text DEFAULT NULL,
	destinations text[] DEFAULT NULL,
	min_grade double precision DEFAULT NULL,
	min_score double precision DEFAULT NULL,
	for_duration interval DEFAULT '0',
	cooldown interval DEFAULT '0',
	group_by text[] DEFAULT '{partition_key}',
	severity text DEFAULT 'warning',
	send_resolved boolean DEFAULT true,
	repeat_interval interval DEFAULT NULL,
	subject_template text DEFAULT NULL,
	body_template text DEFAULT NULL,
	templates jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

-- The fields of a rule notification's payload (_rule_payload) that a
-- template may name, and the templates of each destination kind.
CREATE OR REPLACE FUNCTION _template_roots()
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
	SELECT ARRAY['version', 'source', 'alert', 'status', 'severity', 'detector', 'key', 'score',
				 'grade', 'explanation', 'fingerprint', 'episode', 'starts_at', 'ends_at',
				 'commit_time', 'scored_at', 'time', 'score_id', 'source_key', 'partition_key',
				 'row', 'peak_score', 'peak_grade', 'repeat', 'created_at']
$$;

-- Checks a rule's templates: raises on a syntax error, an unknown kind or
-- field name, or a template that is not a string; warns about placeholders
-- that will render empty: a field not in the payload, a key field the rule
-- does not group by, a column the source table does not have or the rule's
-- owner (caller) may not read.
CREATE OR REPLACE FUNCTION _check_templates(caller oid, detector text, group_by text[],
								 subject_template text, body_template text, templates jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	allowed constant jsonb := '{"email": ["subject", "body"], "sns": ["subject", "message"], "slack": ["text"]}';
	all_templates text[] := '{}';
	kind text;
	spec jsonb;
	part text;
	value jsonb;
	t text;
	f text;
	col text;
	src regclass;
BEGIN
	IF jsonb_typeof(templates) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'templates must be a JSON object keyed by destination kind'
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'For example {"email": {"subject": "...", "body": "..."}, "sns": {"subject": "...", "message": "..."}, "slack": {"text": "..."}}.';
	END IF;
	FOR kind, spec IN SELECT e.key, e.value FROM jsonb_each(templates) e LOOP
		IF NOT allowed ? kind THEN
			RAISE EXCEPTION 'no templates for % destinations', kind
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Templates apply to email (subject, body), sns (subject, message) and slack (text); a webhook receives the payload as JSON, with the row.';
		END IF;
		IF jsonb_typeof(spec) <> 'object' THEN
			RAISE EXCEPTION 'templates of % destinations must be a JSON object', kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR part, value IN SELECT e.key, e.value FROM jsonb_each(spec) e LOOP
			IF NOT (allowed -> kind) ? part THEN
				RAISE EXCEPTION '% destinations have no "%" template', kind, part
					USING ERRCODE = 'invalid_parameter_value',
					HINT = format('The templates of %s destinations are %s.', kind,
								  (SELECT string_agg(x, ' and ') FROM jsonb_array_elements_text(allowed -> kind) x));
			END IF;
			IF jsonb_typeof(value) <> 'string' THEN
				RAISE EXCEPTION 'the % template of % destinations must be a string', part, kind
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			all_templates := all_templates || (value #>> '{}');
		END LOOP;
	END LOOP;
	IF subject_template IS NOT NULL THEN
		all_templates := all_templates || subject_template;
	END IF;
	IF body_template IS NOT NULL THEN
		all_templates := all_templates || body_template;
	END IF;

	SELECT d.source INTO src FROM anomaly.detectors d WHERE d.name = _check_templates.detector;
	FOREACH t IN ARRAY all_templates LOOP
		FOREACH f IN ARRAY anomaly._template_fields(t) LOOP
			IF NOT split_part(f, '.', 1) = ANY (anomaly._template_roots()) THEN
				RAISE WARNING 'template field "%" is not in the payload: it renders empty', f
					USING HINT = 'Fields: ' || array_to_string(anomaly._template_roots(), ', ') ||
								 '; row.<column> and key.<group> name parts of row and key.';
			ELSIF f LIKE 'key.%' AND NOT split_part(f, '.', 2) = ANY (coalesce(group_by, '{}')) THEN
				RAISE WARNING 'template field "%" is not in the alert''s key: it renders empty', f
					USING DETAIL = format('The rule groups by %s.', coalesce(array_to_string(group_by, ', '), 'nothing'));
			ELSIF f LIKE 'row.%' THEN
				col := split_part(f, '.', 2);
				IF src IS NULL THEN
					RAISE WARNING 'detector "%" has no source table: template field "%" renders empty', detector, f;
				ELSIF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
								  WHERE a.attrelid = src AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
					RAISE WARNING 'table % has no column "%": template field "%" renders empty', src, col, f;
				ELSIF NOT has_column_privilege(caller, src, col, 'SELECT') THEN
					RAISE WARNING 'role % may not read column "%" of %: template field "%" renders empty',
						caller::regrole, col, src, f
						USING DETAIL = 'A notification carries only the columns of the source row that the rule''s owner may read.';
				END IF;
			END IF;
		END LOOP;
	END LOOP;
END
$$;

-- The caller must own the detector (a superuser may also name one that
-- does not exist, whose scores come from elsewhere) and the destinations.
CREATE OR REPLACE FUNCTION _create_alert_rule(
	caller oid,
	name text,
	detector text,
	destination text,
	destinations text[],
	min_grade double precision,
	min_score double precision,
	for_duration interval,
	cooldown interval,
	group_by text[],
	severity text,
	send_resolved boolean,
	repeat_interval interval,
	subject_template text,
	body_template text,
	templates jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	dests text[];
	d text;
	g text;
	det_owner regrole;
	det_missing boolean;
BEGIN
	IF name IS NULL OR detector IS NULL THEN
		RAISE EXCEPTION 'alert rule name and detector may not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid alert rule name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use up to 128 letters, digits, "_", ".", ":" or "-", starting with a letter or digit.';
	END IF;
	dests := coalesce(destinations, '{}') || CASE WHEN destination IS NULL THEN '{}'::text[] ELSE ARRAY[destination] END;
	IF cardinality(dests) = 0 THEN
		RAISE EXCEPTION 'alert rule "%" needs a destination', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT x.owner INTO det_owner FROM anomaly.detectors x WHERE x.name = _create_alert_rule.detector;
	IF NOT FOUND AND NOT (SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = caller) THEN
		RAISE EXCEPTION 'detector "%" does not exist', detector
			USING ERRCODE = 'undefined_object';
	END IF;
	det_missing := NOT FOUND;
	IF NOT det_missing AND NOT anomaly._owns(caller, det_owner) THEN
		RAISE EXCEPTION 'must be owner of detector "%"', detector
			USING ERRCODE = 'insufficient_privilege',
			HINT = 'An alert rule shows the scores and keys of its detector''s rows: only the detector''s owner may create one.';
	END IF;
	FOREACH d IN ARRAY dests LOOP
		PERFORM anomaly._usable_destination(caller, d);
	END LOOP;
	IF min_grade IS NULL AND min_score IS NULL THEN
		RAISE EXCEPTION 'alert rule "%" needs min_grade or min_score', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF min_grade < 0 OR min_grade > 1 OR min_grade = 'NaN' THEN
		RAISE EXCEPTION 'min_grade must be between 0 and 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF min_score < 0 OR min_score = 'NaN' THEN
		RAISE EXCEPTION 'min_score must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF for_duration IS NULL OR for_duration < '0' OR cooldown IS NULL OR cooldown < '0' THEN
		RAISE EXCEPTION 'for_duration and cooldown must be non-negative intervals'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF repeat_interval <= '0' THEN
		RAISE EXCEPTION 'repeat_interval must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Leave it NULL to notify once per episode.';
	END IF;
	IF severity IS NULL OR severity NOT IN ('info', 'warning', 'error', 'critical') THEN
		RAISE EXCEPTION 'invalid severity "%"', severity
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Severities are info, warning, error and critical.';
	END IF;
	FOREACH g IN ARRAY coalesce(group_by, '{}') LOOP
		IF g NOT IN ('partition_key', 'source_key') AND g !~ '^source_key\.[A-Za-z0-9_]+$' THEN
			RAISE EXCEPTION 'cannot group alerts by "%"', g
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Group by partition_key, source_key or source_key.<field>.';
		END IF;
	END LOOP;
	IF EXISTS (SELECT 1 FROM anomaly.alert_rules r WHERE r.name = _create_alert_rule.name) THEN
		RAISE EXCEPTION 'alert rule "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	IF det_missing THEN
		-- a superuser's rule on scores written under that name by other
		-- means (or by a detector created later): say it does not fire now
		RAISE NOTICE 'detector "%" does not exist: alert rule "%" fires only once scores of that name are written', detector, name
			USING HINT = 'Create the detector with anomaly.create_detector(), or check the name in anomaly.detectors.';
	END IF;
	PERFORM anomaly._check_templates(caller, detector, coalesce(group_by, '{}'), subject_template,
									 body_template, coalesce(templates, '{}'));
	INSERT INTO anomaly.alert_rules (name, detector, destinations, min_grade, min_score,
									 for_duration, cooldown, group_by, severity, send_resolved,
									 repeat_interval, owner, subject_template, body_template,
									 templates)
	VALUES (name, detector, dests, min_grade, min_score, for_duration, cooldown,
			coalesce(group_by, '{}'), severity, coalesce(send_resolved, true),
			repeat_interval, caller::regrole, subject_template, body_template,
			coalesce(templates, '{}'));
END
$$;

-- Drops an alert rule and its episodes.
CREATE OR REPLACE FUNCTION drop_alert_rule(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION _drop_alert_rule(caller oid, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	o regrole;
BEGIN
	SELECT r.owner INTO o FROM anomaly.alert_rules r WHERE r.name = _drop_alert_rule.name FOR UPDATE;
	PERFORM anomaly._check_owner(caller, 'alert rule', name, o);
	DELETE FROM anomaly.alert_rules r WHERE r.name = _drop_alert_rule.name;
END
$$;

-- Changes an alert rule: each argument given replaces the rule's value
-- (NULL: unchanged); unset names the optional values to clear (min_grade,
-- min_score, repeat_interval, subject_template, body_template, templates).  The detector and group_by stay: a rule on
-- other rows or keys is a new rule (drop and create it).
CREATE OR REPLACE FUNCTION alter_alert_rule(
	name text,
	destination text DEFAULT NULL,
	destinations text[] DEFAULT NULL,
	min_grade double precision DEFAULT NULL,
	min_score double precision DEFAULT NULL,
	for_duration interval DEFAULT NULL,
	cooldown interval DEFAULT NULL,
	severity text DEFAULT NULL,
	send_resolved boolean DEFAULT NULL,
	repeat_interval interval DEFAULT NULL,
	enabled boolean DEFAULT NULL,
	unset text[] DEFAULT NULL,
	subject_template text DEFAULT NULL,
	body_template text DEFAULT NULL,
	templates jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

-- The caller must own the rule and every destination it names, and (unless
-- a superuser) still own the rule's detector: a rule's owner who lost the
-- detector may disable or drop the rule, not aim it elsewhere.
CREATE OR REPLACE FUNCTION _alter_alert_rule(
	caller oid,
	name text,
	destination text,
	destinations text[],
	min_grade double precision,
	min_score double precision,
	for_duration interval,
	cooldown interval,
	severity text,
	send_resolved boolean,
	repeat_interval interval,
	enabled boolean,
	unset text[],
	subject_template text,
	body_template text,
	templates jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	r anomaly.alert_rules;
	det_owner regrole;
	dests text[];
	d text;
	u text;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'alert rule name may not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO r FROM anomaly.alert_rules x WHERE x.name = _alter_alert_rule.name FOR UPDATE;
	PERFORM anomaly._check_owner(caller, 'alert rule', name, r.owner);
	FOREACH u IN ARRAY coalesce(unset, '{}') LOOP
		IF u IS NULL OR u NOT IN ('min_grade', 'min_score', 'repeat_interval',
								  'subject_template', 'body_template', 'templates') THEN
			RAISE EXCEPTION 'cannot unset "%"', u
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Only min_grade, min_score, repeat_interval, subject_template, body_template and templates may be unset.';
		END IF;
	END LOOP;
	IF (min_grade IS NOT NULL AND 'min_grade' = ANY (unset))
	   OR (min_score IS NOT NULL AND 'min_score' = ANY (unset))
	   OR (repeat_interval IS NOT NULL AND 'repeat_interval' = ANY (unset))
	   OR (subject_template IS NOT NULL AND 'subject_template' = ANY (unset))
	   OR (body_template IS NOT NULL AND 'body_template' = ANY (unset))
	   OR (templates IS NOT NULL AND 'templates' = ANY (unset)) THEN
		RAISE EXCEPTION 'a value may not be both given and unset'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- anything but disabling aims the rule's detector's scores somewhere:
	-- the caller must still be allowed to create this rule
	IF destination IS NOT NULL OR destinations IS NOT NULL OR min_grade IS NOT NULL
	   OR min_score IS NOT NULL OR for_duration IS NOT NULL OR cooldown IS NOT NULL
	   OR severity IS NOT NULL OR send_resolved IS NOT NULL OR repeat_interval IS NOT NULL
	   OR subject_template IS NOT NULL OR body_template IS NOT NULL OR templates IS NOT NULL
	   OR coalesce(enabled, false) OR cardinality(unset) > 0 THEN
		SELECT x.owner INTO det_owner FROM anomaly.detectors x WHERE x.name = r.detector;
		IF FOUND AND NOT anomaly._owns(caller, det_owner) THEN
			RAISE EXCEPTION 'must be owner of detector "%"', r.detector
				USING ERRCODE = 'insufficient_privilege',
				HINT = 'The rule''s owner no longer owns its detector: the rule may only be disabled or dropped.';
		END IF;
		IF NOT FOUND AND NOT (SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = caller) THEN
			RAISE EXCEPTION 'detector "%" does not exist', r.detector
				USING ERRCODE = 'undefined_object',
				HINT = 'The rule may only be disabled or dropped.';
		END IF;
	END IF;

	IF destination IS NOT NULL OR destinations IS NOT NULL THEN
		dests := coalesce(destinations, '{}') || CASE WHEN destination IS NULL THEN '{}'::text[] ELSE ARRAY[destination] END;
		IF cardinality(dests) = 0 THEN
			RAISE EXCEPTION 'alert rule "%" needs a destination', name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOREACH d IN ARRAY dests LOOP
			PERFORM anomaly._usable_destination(caller, d);
		END LOOP;
		r.destinations := dests;
	END IF;
	IF min_grade IS NOT NULL THEN
		IF min_grade < 0 OR min_grade > 1 OR min_grade = 'NaN' THEN
			RAISE EXCEPTION 'min_grade must be between 0 and 1'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		r.min_grade := min_grade;
	ELSIF 'min_grade' = ANY (unset) THEN
		r.min_grade := NULL;
	END IF;
	IF min_score IS NOT NULL THEN
		IF min_score < 0 OR min_score = 'NaN' THEN
			RAISE EXCEPTION 'min_score must not be negative'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		r.min_score := min_score;
	ELSIF 'min_score' = ANY (unset) THEN
		r.min_score := NULL;
	END IF;
	IF r.min_grade IS NULL AND r.min_score IS NULL THEN
		RAISE EXCEPTION 'alert rule "%" needs min_grade or min_score', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF for_duration < '0' OR cooldown < '0' THEN
		RAISE EXCEPTION 'for_duration and cooldown must be non-negative intervals'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	r.for_duration := coalesce(for_duration, r.for_duration);
	r.cooldown := coalesce(cooldown, r.cooldown);
	IF repeat_interval IS NOT NULL THEN
		IF repeat_interval <= '0' THEN
			RAISE EXCEPTION 'repeat_interval must be a positive interval'
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Unset it (unset => ''{repeat_interval}'') to notify once per episode.';
		END IF;
		r.repeat_interval := repeat_interval;
	ELSIF 'repeat_interval' = ANY (unset) THEN
		r.repeat_interval := NULL;
	END IF;
	IF severity IS NOT NULL THEN
		IF severity NOT IN ('info', 'warning', 'error', 'critical') THEN
			RAISE EXCEPTION 'invalid severity "%"', severity
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Severities are info, warning, error and critical.';
		END IF;
		r.severity := severity;
	END IF;
	r.send_resolved := coalesce(send_resolved, r.send_resolved);
	r.enabled := coalesce(enabled, r.enabled);
	IF subject_template IS NOT NULL OR body_template IS NOT NULL OR templates IS NOT NULL
	   OR unset && '{subject_template,body_template,templates}' THEN
		r.subject_template := CASE WHEN 'subject_template' = ANY (unset) THEN NULL
								   ELSE coalesce(subject_template, r.subject_template) END;
		r.body_template := CASE WHEN 'body_template' = ANY (unset) THEN NULL
								ELSE coalesce(body_template, r.body_template) END;
		r.templates := CASE WHEN 'templates' = ANY (unset) THEN '{}'
							ELSE coalesce(templates, r.templates) END;
		PERFORM anomaly._check_templates(caller, r.detector, r.group_by, r.subject_template,
										 r.body_template, r.templates);
	END IF;

	UPDATE anomaly.alert_rules x
	SET destinations = r.destinations, min_grade = r.min_grade, min_score = r.min_score,
		for_duration = r.for_duration, cooldown = r.cooldown, severity = r.severity,
		send_resolved = r.send_resolved, repeat_interval = r.repeat_interval, enabled = r.enabled,
		subject_template = r.subject_template, body_template = r.body_template,
		templates = r.templates
	WHERE x.name = r.name;
END
$$;

-- The payload of a rule notification.
-- The payload of a rule notification.  "row" is the scored row with the
-- columns the rule's owner may read (_source_row), at most 16 kB.
CREATE OR REPLACE FUNCTION _rule_payload(r anomaly.alert_rules, ep anomaly.alert_episodes, s anomaly.scores, status text)
RETURNS jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
	SELECT jsonb_build_object(
		'version', 1,
		'source', 'rule',
		'alert', r.name,
		'status', status,
		'severity', r.severity,
		'detector', r.detector,
		'key', ep.group_key,
		'score', s.anomaly_score,
		'grade', s.anomaly_grade,
		'explanation', s.explanation,
		'fingerprint', ep.fingerprint,
		'episode', ep.id,
		'starts_at', ep.started_at,
		'ends_at', ep.resolved_at,
		'commit_time', s.commit_time,
		'scored_at', s.scored_at,
		'time', coalesce(s.commit_time, s.scored_at),
		'score_id', s.id,
		'source_key', s.source_key,
		'partition_key', s.partition_key,
		'row', anomaly._fit_json(anomaly._source_row(r.owner::oid, r.detector, s.source_key), 16384),
		'peak_score', ep.peak_score,
		'peak_grade', ep.peak_grade,
		'repeat', greatest(ep.notifications - 1, 0),
		'created_at', now())
$$;

-- Queues the notifications of one rule transition to every destination.
-- With templates, a destination's subject is its rendered subject template,
-- and an e-mail, SNS or Slack destination's payload carries the rendered
-- body template as "message" (which _render sends instead of the default
-- text); a webhook or notify destination gets the payload as it is.
CREATE OR REPLACE FUNCTION _notify_rule(r anomaly.alert_rules, ep anomaly.alert_episodes, s anomaly.scores, status text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	d text;
	payload jsonb := anomaly._rule_payload(r, ep, s, status);
	subj text;
	kind text;
	t_subject text;
	t_body text;
BEGIN
	subj := format('[%s] %s: %s%s', upper(status), r.name, r.detector,
				   CASE WHEN ep.group_key = '{}' THEN ''
						ELSE ' ' || (SELECT string_agg(key || '=' || (value #>> '{}'), ' ' ORDER BY key)
									 FROM jsonb_each(ep.group_key)) END);
	FOREACH d IN ARRAY r.destinations LOOP
		SELECT x.kind INTO kind FROM anomaly.destinations x WHERE x.name = d;
		t_subject := coalesce(r.templates -> kind ->> 'subject', r.subject_template);
		t_body := coalesce(r.templates -> kind ->> CASE kind WHEN 'sns' THEN 'message'
															 WHEN 'slack' THEN 'text' ELSE 'body' END,
						   r.body_template);
		PERFORM anomaly._enqueue(d,
								 CASE WHEN t_subject IS NULL THEN subj
									  ELSE anomaly._render_template(t_subject, payload) END,
								 CASE WHEN t_body IS NULL OR kind NOT IN ('email', 'sns', 'slack') THEN payload
									  ELSE payload || jsonb_build_object('message', anomaly._render_template(t_body, payload)) END,
								 'anomaly-' || ep.fingerprint || '-' || ep.id || '-' || status ||
								 CASE WHEN status = 'firing' AND ep.notifications > 1
									  THEN '-' || ep.notifications ELSE '' END);
	END LOOP;
END
$$;

-- AFTER INSERT statement trigger on anomaly.scores: evaluates the rules of
-- the detectors whose scores were inserted, in the same transaction.
CREATE OR REPLACE FUNCTION _evaluate_rules()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
-- what prints the statements run as the owner, how they read, how numbers,
-- times and intervals are computed and written (src/pinned.c)
SET debug_print_parse = off SET debug_print_rewritten = off SET debug_print_plan = off
SET standard_conforming_strings = on SET extra_float_digits = 1
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres'
AS $$
DECLARE
	r anomaly.alert_rules;
	s anomaly.scores;
	ep anomaly.alert_episodes;
	g text;
	gkey jsonb;
	fp text;
	t timestamptz;
	hot boolean;
	cooling boolean;
	here text;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM anomaly.alert_rules WHERE enabled) THEN
		RETURN NULL;
	END IF;
	-- where a detector scores (detectors.home, src/detect/definition.c)
	here := anomaly._detector_home();
	-- a rule sees the scores of its detector only while its owner owns the
	-- detector (a detector dropped and created again by another role under
	-- the same name does not feed it), and only once the detector scores
	-- here: rows pg_restore copies into anomaly.scores are history, not
	-- new scores, until a round adopts their detector (they were evaluated
	-- where they were scored); scores of no detector feed the rules of
	-- superusers only
	FOR r IN SELECT * FROM anomaly.alert_rules ru
			 WHERE ru.enabled AND ru.detector IN (SELECT DISTINCT n.detector FROM new_scores n)
			   AND CASE WHEN EXISTS (SELECT 1 FROM anomaly.detectors d WHERE d.name = ru.detector)
						THEN EXISTS (SELECT 1 FROM anomaly.detectors d
									 WHERE d.name = ru.detector AND d.home = here
									   AND anomaly._owns(ru.owner::oid, d.owner))
						ELSE coalesce((SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = ru.owner::oid), false)
				   END
			 ORDER BY ru.name LOOP
		FOR s IN SELECT * FROM new_scores n WHERE n.detector = r.detector ORDER BY n.id LOOP
			gkey := '{}';
			FOREACH g IN ARRAY r.group_by LOOP
				gkey := gkey || jsonb_build_object(g,
					CASE WHEN g = 'partition_key' THEN to_jsonb(s.partition_key)
						 WHEN g = 'source_key' THEN s.source_key
						 ELSE s.source_key -> substr(g, 12) END);
			END LOOP;
			fp := anomaly._fingerprint(r.name, gkey::text);
			t := coalesce(s.commit_time, s.scored_at, now());
			hot := s.anomaly_score IS NOT NULL
				AND s.anomaly_score = s.anomaly_score	-- not NaN
				AND (r.min_grade IS NULL OR coalesce(s.anomaly_grade, 0) >= r.min_grade)
				AND (r.min_score IS NULL OR s.anomaly_score >= r.min_score);

			-- one evaluation of an episode at a time, on a lock SQL cannot take
			PERFORM anomaly._lock_episode(fp);
			SELECT * INTO ep FROM anomaly.alert_episodes e
			WHERE e.rule = r.name AND e.fingerprint = fp AND e.status <> 'resolved'
			FOR UPDATE;

			IF hot THEN
				IF ep.id IS NULL THEN
					INSERT INTO anomaly.alert_episodes (rule, fingerprint, group_key, status, started_at,
														last_seen_at, first_score_id, last_score_id,
														peak_score, peak_grade)
					VALUES (r.name, fp, gkey, 'pending', t, t, s.id, s.id, s.anomaly_score, s.anomaly_grade)
					RETURNING * INTO ep;
				ELSE
					UPDATE anomaly.alert_episodes e
					SET last_seen_at = greatest(e.last_seen_at, t), last_score_id = s.id,
						peak_score = greatest(e.peak_score, s.anomaly_score),
						peak_grade = greatest(e.peak_grade, s.anomaly_grade)
					WHERE e.id = ep.id
					RETURNING * INTO ep;
				END IF;
				IF ep.status = 'pending' AND t - ep.started_at >= r.for_duration THEN
					-- t - fired_at, not t - cooldown: a cooldown may be
					-- longer than the calendar before t
					cooling := r.cooldown > '0' AND EXISTS (
						SELECT 1 FROM anomaly.alert_episodes e
						WHERE e.rule = r.name AND e.fingerprint = fp AND e.notified
						  AND e.id <> ep.id AND t - e.fired_at < r.cooldown);
					UPDATE anomaly.alert_episodes e
					SET status = 'firing', fired_at = t, notified = NOT cooling,
						notifications = CASE WHEN cooling THEN 0 ELSE 1 END,
						last_notified_at = CASE WHEN cooling THEN NULL ELSE t END
					WHERE e.id = ep.id
					RETURNING * INTO ep;
					IF NOT cooling THEN
						PERFORM anomaly._notify_rule(r, ep, s, 'firing');
					END IF;
				ELSIF ep.status = 'firing' AND r.repeat_interval IS NOT NULL
					AND t - coalesce(ep.last_notified_at, ep.fired_at) >= r.repeat_interval THEN
					-- still firing: remind (an episode that fired silently in a
					-- cooldown speaks up once it has lasted repeat_interval)
					UPDATE anomaly.alert_episodes e
					SET notified = true, notifications = e.notifications + 1, last_notified_at = t
					WHERE e.id = ep.id
					RETURNING * INTO ep;
					PERFORM anomaly._notify_rule(r, ep, s, 'firing');
				END IF;
			ELSIF ep.id IS NOT NULL THEN
				IF ep.status = 'pending' THEN
					DELETE FROM anomaly.alert_episodes e WHERE e.id = ep.id;
				ELSE
					UPDATE anomaly.alert_episodes e
					SET status = 'resolved', resolved_at = t, last_score_id = s.id
					WHERE e.id = ep.id
					RETURNING * INTO ep;
					IF ep.notified AND r.send_resolved THEN
						PERFORM anomaly._notify_rule(r, ep, s, 'resolved');
					END IF;
				END IF;
			END IF;
			ep := NULL;
		END LOOP;
	END LOOP;
	RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER scores_alert_rules
	AFTER INSERT ON scores
	REFERENCING NEW TABLE AS new_scores
	FOR EACH STATEMENT EXECUTE FUNCTION _evaluate_rules();

