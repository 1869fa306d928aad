-- Who sees which rows of the alert tables (schema/040_alert_tables.sql).
-- Run by the install and by every update, as a view is replaced: each
-- policy is dropped and created again, so its one definition is here.

-- An admin sees only their own rows (and those of roles whose privileges
-- they have); superusers and the extension's owner see all.
ALTER TABLE destinations ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_episodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE delivery_counters ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_destinations ON destinations;
CREATE POLICY own_destinations ON destinations FOR SELECT
	USING (pg_catalog.pg_has_role(owner::oid, 'USAGE'));
DROP POLICY IF EXISTS own_rules ON alert_rules;
CREATE POLICY own_rules ON alert_rules FOR SELECT
	USING (pg_catalog.pg_has_role(owner::oid, 'USAGE'));
DROP POLICY IF EXISTS own_episodes ON alert_episodes;
CREATE POLICY own_episodes ON alert_episodes FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.alert_rules r
				   WHERE r.name OPERATOR(pg_catalog.=) rule
					 AND pg_catalog.pg_has_role(r.owner::oid, 'USAGE')));
DROP POLICY IF EXISTS own_outbox ON outbox;
CREATE POLICY own_outbox ON outbox FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.destinations d
				   WHERE d.name OPERATOR(pg_catalog.=) destination
					 AND pg_catalog.pg_has_role(d.owner::oid, 'USAGE')));
-- a dead letter belongs to the destination of its name that was there when
-- it was queued: one of a dropped destination is not shown to the owner of
-- a new destination of the same name (whose created_at is past them:
-- _create_destination)
DROP POLICY IF EXISTS own_dead_letters ON dead_letters;
CREATE POLICY own_dead_letters ON dead_letters FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.destinations d
				   WHERE d.name OPERATOR(pg_catalog.=) destination
					 AND d.created_at OPERATOR(pg_catalog.<=) dead_letters.created_at
					 AND pg_catalog.pg_has_role(d.owner::oid, 'USAGE')));
DROP POLICY IF EXISTS own_counters ON delivery_counters;
CREATE POLICY own_counters ON delivery_counters FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.destinations d
				   WHERE d.name OPERATOR(pg_catalog.=) destination
					 AND pg_catalog.pg_has_role(d.owner::oid, 'USAGE')));

