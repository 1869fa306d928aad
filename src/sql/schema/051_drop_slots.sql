-- DROP EXTENSION drops the detectors' replication slots: this trigger loads
-- the library, whose object access hook does it when the extension is really
-- dropped (_ddl_guard, 050_detect.sql).
CREATE EVENT TRIGGER anomaly_drop_slots ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
	EXECUTE FUNCTION _ddl_guard();
COMMENT ON EVENT TRIGGER anomaly_drop_slots IS 'drops the detectors'' replication slots with the extension';
