-- Alert message templates and the source row of a rule's notification
-- (used by the alert rules, 044_alert_rules.sql).  Internal: only the
-- extension's owner may execute them.

-- Renders a template over a notification's payload: {{path}} placeholders
-- replaced by the payload's values (src/alert/template.c).
CREATE OR REPLACE FUNCTION _render_template(template text, payload jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'anomaly_alert_render_template'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The paths of a template's placeholders; raises its syntax error.
CREATE OR REPLACE FUNCTION _template_fields(template text)
RETURNS text[]
AS 'MODULE_PATHNAME', 'anomaly_alert_template_fields'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The scored row, looked up in the detector's source table by its key,
-- with the columns owner may read, read as owner (src/alert/source_row.c).
CREATE OR REPLACE FUNCTION _source_row(owner oid, detector text, source_key jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'anomaly_alert_source_row'
LANGUAGE C VOLATILE STRICT;

REVOKE EXECUTE ON FUNCTION
	_render_template(text, jsonb),
	_template_fields(text),
	_source_row(oid, text, jsonb)
FROM PUBLIC;

COMMENT ON FUNCTION _render_template(text, jsonb) IS 'internal: an alert template rendered over a notification''s payload';
COMMENT ON FUNCTION _template_fields(text) IS 'internal: the fields an alert template uses; raises its syntax error';
COMMENT ON FUNCTION _source_row(oid, text, jsonb) IS 'internal: a scored row''s columns that a rule''s owner may read, read as that owner';
