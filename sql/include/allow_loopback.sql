-- Lets alert deliveries reach loopback only (anomaly.allowed_destination_hosts),
-- reloads the configuration with whatever else the including test set by
-- ALTER SYSTEM before it, and waits for the reload.  Included with \i by the
-- alert tests, which reset what they set at their end.
ALTER SYSTEM SET anomaly.allowed_destination_hosts = '127.0.0.1, ::1';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
