/*
 * settings.c
 *	  Settings of the alert layer, and its part of _PG_init.
 *
 * Secrets (credentials, AWS keys) are superuser-only, hidden from SHOW ALL
 * and pg_settings, and reloadable only (PGC_SIGHUP): they are set in
 * postgresql.conf (or a file it includes), never with SQL.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "alert/alert.h"

char	   *alert_credentials = NULL;
char	   *alert_credential_bindings = NULL;
char	   *alert_allowed_destination_hosts = NULL;
bool		alert_smtp_allow_plaintext_auth = false;
char	   *alert_aws_access_key_id = NULL;
char	   *alert_aws_secret_access_key = NULL;
char	   *alert_aws_session_token = NULL;
char	   *alert_aws_profile = NULL;
char	   *alert_aws_shared_credentials_file = NULL;
char	   *alert_aws_container_endpoint = NULL;
char	   *alert_aws_imds_endpoint = NULL;
char	   *alert_sns_endpoint = NULL;
char	   *alert_tls_ca_file = NULL;
char	   *alert_sender_database = NULL;
bool		alert_sender_enabled = true;
int			alert_sender_naptime_ms = 1000;
int			alert_sender_batch = 500;
int			alert_concurrency = 16;
int			alert_connect_timeout_ms = 5000;
int			alert_request_timeout_ms = 10000;
int			alert_max_response_bytes = 65536;
int			alert_retry_base_ms = 1000;
int			alert_retry_max_ms = 600000;
int			alert_max_attempts = 12;
int			alert_retention_s = 30 * 24 * 3600;

#define SECRET_FLAGS (GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE)

/* Defines a secret string setting. */
static void
define_secret(const char *name, const char *desc, char **var)
{
	DefineCustomStringVariable(name, desc,
							   "Superuser-only and hidden; set it in postgresql.conf.",
							   var, "", PGC_SIGHUP, SECRET_FLAGS,
							   NULL, NULL, NULL);
}

/* Check hook of anomaly.allowed_destination_hosts: every entry parses. */
static bool
check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	char	   *bad = NULL;

	if (alert_allowlist_check(*newval, &bad))
		return true;
	GUC_check_errdetail("\"%s\" is not an IP address, a CIDR range or a host name.",
						bad ? bad : "?");
	return false;
}

/* Registers the settings, and (when preloaded) the shared memory. */
void
anomaly_alert_init(void)
{
	define_secret("anomaly.credentials",
				  "Named secrets for alert destinations: name=value pairs separated by semicolons.",
				  &alert_credentials);
	DefineCustomStringVariable("anomaly.credential_bindings",
							   "Where each named credential may be sent: name=URL-prefix [URL-prefix...], separated by semicolons.",
							   "A credential is used only for a URL with the scheme, host and port of one of its prefixes and a path starting with its path; a credential without a binding is never used.",
							   &alert_credential_bindings, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("anomaly.allowed_destination_hosts",
							   "Non-public addresses (IP addresses, CIDR ranges) and host names that deliveries may connect to.",
							   "Loopback, link-local, private and other non-public addresses are refused unless listed; checked on the address connected to.",
							   &alert_allowed_destination_hosts, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY, check_allowed_hosts, NULL, NULL);
	DefineCustomBoolVariable("anomaly.smtp_allow_plaintext_auth",
							 "Whether SMTP AUTH may be sent over a connection that is not encrypted for sure.",
							 "Off: a destination with a username needs smtps:// or \"starttls\": \"required\".",
							 &alert_smtp_allow_plaintext_auth, false, PGC_SIGHUP,
							 GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	define_secret("anomaly.aws_access_key_id",
				  "AWS access key id for SNS.", &alert_aws_access_key_id);
	define_secret("anomaly.aws_secret_access_key",
				  "AWS secret access key for SNS.", &alert_aws_secret_access_key);
	define_secret("anomaly.aws_session_token",
				  "AWS session token for SNS.", &alert_aws_session_token);

	DefineCustomStringVariable("anomaly.aws_profile",
							   "Profile of the AWS shared credentials file (default: AWS_PROFILE, else default).",
							   NULL, &alert_aws_profile, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("anomaly.aws_shared_credentials_file",
							   "AWS shared credentials file (default: AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials).",
							   NULL, &alert_aws_shared_credentials_file, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("anomaly.aws_container_endpoint",
							   "Base URL of the ECS container credentials endpoint.",
							   NULL, &alert_aws_container_endpoint, "http://169.254.170.2",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("anomaly.aws_imds_endpoint",
							   "Base URL of the EC2 instance metadata service (IMDSv2); empty disables it.",
							   NULL, &alert_aws_imds_endpoint, "http://169.254.169.254",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("anomaly.sns_endpoint",
							   "SNS endpoint URL (default: https://sns.<region>.amazonaws.com/).",
							   NULL, &alert_sns_endpoint, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("anomaly.tls_ca_file",
							   "Certificate authorities that TLS connections of deliveries trust (default: the system's).",
							   "A PEM file; for a private CA of an internal SMTP relay or webhook endpoint.",
							   &alert_tls_ca_file, "", PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomBoolVariable("anomaly.sender_enabled",
							 "Whether the sender worker delivers (it idles when off).",
							 NULL, &alert_sender_enabled, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.sender_naptime",
							"Longest sleep of the sender worker between rounds.",
							NULL, &alert_sender_naptime_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.sender_batch",
							"Notifications the sender worker claims per round.",
							NULL, &alert_sender_batch, 500, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.delivery_concurrency",
							"Transfers in flight at once during a delivery round.",
							NULL, &alert_concurrency, 16, 1, 256,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.connect_timeout",
							"Connect timeout of a delivery.",
							NULL, &alert_connect_timeout_ms, 5000, 10, 600000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.request_timeout",
							"Total timeout of a delivery (a destination's timeout_ms overrides it).",
							NULL, &alert_request_timeout_ms, 10000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.max_response_bytes",
							"Largest response body (and, separately, headers) read from a destination.",
							NULL, &alert_max_response_bytes, 65536, 1024, 16 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.retry_base",
							"First retry delay (doubled per attempt, with full jitter).",
							NULL, &alert_retry_base_ms, 1000, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.retry_max",
							"Longest retry delay, Retry-After included.",
							NULL, &alert_retry_max_ms, 600000, 1, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.max_attempts",
							"Attempts before a notification goes to the dead letters.",
							NULL, &alert_max_attempts, 12, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.alert_retention",
							"Age after which dead letters and resolved episodes are purged.",
							NULL, &alert_retention_s, 30 * 24 * 3600, 60, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);

	alert_redact_init();

	DefineCustomStringVariable("anomaly.sender_database",
							   "Databases whose outbox a sender worker delivers (comma-separated; empty: every database with the extension).",
							   NULL, &alert_sender_database, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		alert_shmem_init();
}
