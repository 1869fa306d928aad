-- The analysis functions and types are for every role; what changes state
-- (detectors, destinations, alert rules) is granted separately, to
-- anomaly_admin, and revoked from PUBLIC where it is defined.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-- The role that may manage detectors, destinations and alert rules; one
-- cluster-wide role shared by every database that installs the extension.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anomaly_admin') THEN
		CREATE ROLE anomaly_admin NOLOGIN;
	END IF;
END
$$;
COMMENT ON ROLE anomaly_admin IS 'may manage anomaly detectors, alert destinations and rules, and send alerts';
