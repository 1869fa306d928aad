-- ---------------------------------------------------------------------------
-- Grants

-- The tables: admins read their own rows (the policies of
-- schema/040_alert_tables.sql), only the extension's code writes.
REVOKE ALL ON destinations, alert_rules, alert_episodes, outbox, dead_letters,
	delivery_counters, delivery_errors FROM PUBLIC;
GRANT SELECT ON destinations, alert_rules, alert_episodes, outbox, dead_letters,
	delivery_counters TO anomaly_admin;

-- Functions are executable by PUBLIC by default.  The management
-- functions: the admin role (and superusers) only, one list for both.
DO $$
DECLARE
	f regprocedure;
BEGIN
	FOREACH f IN ARRAY ARRAY[
		'create_destination(text, text, jsonb)',
		'alter_destination(text, jsonb, boolean)',
		'drop_destination(text, boolean)',
		'send_alert(text, text, jsonb)',
		'alert_trigger()',
		'create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb)',
		'drop_alert_rule(text)',
		'alter_alert_rule(text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb)',
		'replay_dead_letters(text, bigint[], timestamptz)',
		'purge_alert_history(interval)',
		'deliver(integer)',
		'test_destination(text)'
	]::regprocedure[] LOOP
		EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO anomaly_admin', f);
	END LOOP;
END
$$;
-- The internal ones: the extension's owner only.
REVOKE EXECUTE ON FUNCTION
	_reject_secret_keys(jsonb, text),
	_a(text),
	_config_text(jsonb, text, boolean, text),
	_config_whole(jsonb, text, integer, integer, text),
	_check_url(text, text[], text, text),
	_check_config(text, jsonb),
	_credential_bound(text, text),
	_check_bindings(text, jsonb),
	_check_payload_mode(oid, text, jsonb),
	_owns(oid, regrole),
	_check_owner(oid, text, text, regrole),
	_usable_destination(oid, text, boolean),
	_create_destination(oid, text, text, jsonb),
	_alter_destination(oid, text, jsonb, boolean),
	_drop_destination(oid, text, boolean),
	_fit_json(jsonb, integer),
	_fingerprint(text[]),
	_lock_episode(text),
	_enqueue(text, text, jsonb, text),
	_destination_kind(text),
	_send_alert(oid, text, text, jsonb),
	_row_to_jsonb(oid, anyelement),
	_create_alert_rule(oid, text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb),
	_drop_alert_rule(oid, text),
	_alter_alert_rule(oid, text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb),
	_template_roots(),
	_check_templates(oid, text, text[], text, text, jsonb),
	_rule_payload(alert_rules, alert_episodes, scores, text),
	_notify_rule(alert_rules, alert_episodes, scores, text),
	_evaluate_rules(),
	_render(text, jsonb, text, jsonb, text, bigint),
	_sns_subject(text),
	_record(bigint[], text[], text[], text[], integer[]),
	_replay_dead_letters(oid, text, bigint[], timestamptz),
	_purge_alert_history(oid, interval),
	_wake_sender()
FROM PUBLIC;

COMMENT ON FUNCTION _lock_episode(text) IS 'internal: the lock of one alert episode until the transaction ends, out of SQL''s reach';
COMMENT ON FUNCTION _credential_bound(text, text) IS 'internal: whether anomaly.credential_bindings lets a credential go to a URL';
COMMENT ON FUNCTION _check_bindings(text, jsonb) IS 'internal: raises unless the credentials a destination config names are bound to its URL';
COMMENT ON FUNCTION _check_payload_mode(oid, text, jsonb) IS 'internal: raises unless a superuser asks for a notify destination''s full payload';
COMMENT ON FUNCTION _owns(oid, regrole) IS 'internal: whether a role may act as the owner of an alert object';
COMMENT ON FUNCTION _check_owner(oid, text, text, regrole) IS 'internal: raises unless an alert object exists and a role may act as its owner';
COMMENT ON FUNCTION _usable_destination(oid, text, boolean) IS 'internal: checks that a destination exists and the caller owns it; returns its kind';
COMMENT ON FUNCTION _row_to_jsonb(oid, anyelement) IS 'internal: to_jsonb of a row as its table''s owner, restricted (alert_trigger)';
COMMENT ON FUNCTION _create_destination(oid, text, text, jsonb) IS 'internal: create_destination as its caller';
COMMENT ON FUNCTION _alter_destination(oid, text, jsonb, boolean) IS 'internal: alter_destination as its caller';
COMMENT ON FUNCTION _drop_destination(oid, text, boolean) IS 'internal: drop_destination as its caller';
COMMENT ON FUNCTION _send_alert(oid, text, text, jsonb) IS 'internal: send_alert as its caller';
COMMENT ON FUNCTION _create_alert_rule(oid, text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb) IS 'internal: create_alert_rule as its caller';
COMMENT ON FUNCTION _drop_alert_rule(oid, text) IS 'internal: drop_alert_rule as its caller';
COMMENT ON FUNCTION _alter_alert_rule(oid, text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb) IS 'internal: alter_alert_rule as its caller';
COMMENT ON FUNCTION _template_roots() IS 'internal: the payload fields an alert template may name';
COMMENT ON FUNCTION _check_templates(oid, text, text[], text, text, jsonb) IS 'internal: checks an alert rule''s templates, warning about fields that render empty';
COMMENT ON FUNCTION _replay_dead_letters(oid, text, bigint[], timestamptz) IS 'internal: replay_dead_letters as its caller';
COMMENT ON FUNCTION _purge_alert_history(oid, interval) IS 'internal: purge_alert_history as its caller';

COMMENT ON FUNCTION create_destination(text, text, jsonb) IS 'creates an alert destination (sns, webhook, slack, email, notify) owned by the caller';
COMMENT ON FUNCTION alter_destination(text, jsonb, boolean) IS 'changes a destination''s config and whether it is enabled (its owner only)';
COMMENT ON FUNCTION drop_destination(text, boolean) IS 'drops a destination; force moves its queued notifications to the dead letters';
COMMENT ON FUNCTION send_alert(text, text, jsonb) IS 'queues a notification to a destination in this transaction; returns its outbox id';
COMMENT ON FUNCTION alert_trigger() IS 'row trigger: each row written raises a notification to the destinations given as trigger arguments';
COMMENT ON FUNCTION create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb) IS 'creates an alert rule over the scores of a detector the caller owns';
COMMENT ON FUNCTION alter_alert_rule(text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb) IS 'changes an alert rule: destinations, thresholds, timing, severity, enabled (NULL: unchanged; unset clears)';
COMMENT ON FUNCTION drop_alert_rule(text) IS 'drops an alert rule and its episodes';
COMMENT ON FUNCTION replay_dead_letters(text, bigint[], timestamptz) IS 'moves dead letters back into the outbox (all, one destination''s, since a time, or by id); returns how many';
COMMENT ON FUNCTION purge_alert_history(interval) IS 'deletes dead letters and resolved episodes older than the retention; returns how many';
COMMENT ON FUNCTION deliver(integer) IS 'one delivery round from SQL: sends up to max due notifications; returns how many were delivered';
COMMENT ON FUNCTION test_destination(text) IS 'sends a test notification to a destination now and reports the outcome';
