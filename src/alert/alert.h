/*
 * alert.h
 *	  The alert layer: settings, credentials, the HTTP/SMTP sender, delivery
 *	  rounds and the sender background worker.
 *
 * The SQL side (src/sql/040_alert_tables.sql to 046_alert_grants.sql) owns
 * the tables and the rule logic; this side sends what the outbox holds and
 * records the outcome.
 */
#ifndef ANOMALY_ALERT_H
#define ANOMALY_ALERT_H

#include "postgres.h"

#include <curl/curl.h>

/* Called once from _PG_init: settings, and shared memory when preloaded. */
extern void anomaly_alert_init(void);

/* settings (guc.c) */
extern char *alert_credentials;
extern char *alert_credential_bindings;
extern char *alert_allowed_destination_hosts;
extern bool alert_smtp_allow_plaintext_auth;
extern char *alert_aws_access_key_id;
extern char *alert_aws_secret_access_key;
extern char *alert_aws_session_token;
extern char *alert_aws_profile;
extern char *alert_aws_shared_credentials_file;
extern char *alert_aws_container_endpoint;
extern char *alert_aws_imds_endpoint;
extern char *alert_sns_endpoint;
extern char *alert_tls_ca_file;
extern char *alert_sender_database;
extern bool alert_sender_enabled;
extern int	alert_sender_naptime_ms;
extern int	alert_sender_batch;
extern int	alert_concurrency;
extern int	alert_connect_timeout_ms;
extern int	alert_request_timeout_ms;
extern int	alert_max_response_bytes;
extern int	alert_retry_base_ms;
extern int	alert_retry_max_ms;
extern int	alert_max_attempts;
extern int	alert_retention_s;

/* credentials.c */
extern char *alert_credential_lookup(const char *name);
extern bool alert_credential_bound(const char *name, const char *url);

/* what alert_credential_for() found */
#define ALERT_CRED_OK			0
#define ALERT_CRED_UNDEFINED	1	/* no value (yet) */
#define ALERT_CRED_UNBOUND		2	/* a value, but not bound to this URL */

extern char *alert_credential_for(const char *name, const char *url, int *status);

typedef struct AlertAwsCredentials
{
	char	   *access_key_id;
	char	   *secret_access_key;
	char	   *session_token;	/* NULL when none */
	const char *source;			/* "settings", "environment", ... */
} AlertAwsCredentials;

extern bool alert_aws_credentials(AlertAwsCredentials *out, char *error,
								  size_t errlen);
extern void alert_aws_credentials_clear(AlertAwsCredentials *creds);

/* http.c: one transfer (HTTP POST, or SMTP upload) */
typedef struct AlertHttpJob
{
	/* the request, filled by the caller (palloc'd or static) */
	const char *url;
	const char *protocols;		/* "http,https" or "smtp,smtps" */
	struct curl_slist *headers; /* HTTP headers, or NULL */
	const char *body;
	size_t		body_len;
	bool		smtp;
	const char *mail_from;
	struct curl_slist *rcpt;
	int			use_ssl;		/* CURLUSESSL_* (SMTP) */
	const char *username;
	const char *password;
	bool		put;			/* PUT instead of POST (IMDSv2 token) */
	bool		get;			/* GET, no body */
	long		timeout_ms;
	bool		trusted;		/* a URL of the superuser's own settings or
								 * the server's environment: exempt from
								 * anomaly.allowed_destination_hosts, and
								 * never reuses or leaves a connection */

	/* the outcome */
	bool		done;
	CURLcode	curl_code;
	long		status;			/* HTTP status or last SMTP reply code */
	long		retry_after_ms; /* from Retry-After, or -1 */
	char	   *response;		/* malloc'd, NUL-terminated, capped */
	size_t		response_len;
	bool		body_too_large;
	bool		headers_too_large;
	size_t		header_bytes;
	int			header_count;
	size_t		upload_off;
	long		elapsed_ms;
	char		errbuf[CURL_ERROR_SIZE];
	bool		host_listed;	/* the URL's host name is listed */
	bool		blocked;		/* a connection was refused by the allowance */
	char		blocked_addr[64];	/* its address */
	CURL	   *easy;
} AlertHttpJob;

extern void alert_http_run(AlertHttpJob **jobs, int njobs, int concurrency);
extern void alert_http_job_release(AlertHttpJob *job);
extern void alert_free_headers(struct curl_slist *list);
extern bool alert_http_carry(AlertHttpJob *job);
extern AlertHttpJob *alert_http_carried_done(void);
extern bool alert_http_transient_curl(CURLcode code);
extern char *alert_http_describe(const AlertHttpJob *job);
extern char *alert_http_class(const AlertHttpJob *job);
extern bool alert_http_refused(const AlertHttpJob *job);
extern bool alert_allowlist_check(const char *value, char **bad);
extern char *alert_printable_snippet(const char *s, size_t len, size_t max);

/* deliver.c */
typedef struct AlertRoundResult
{
	int			claimed;
	int			sent;
	int			retried;
	int			dead;
	int			deferred;
	int			carried;		/* probes started, to end after the round */
	char	   *last_error;		/* of the only item, for test_destination:
								 * its class */
	char	   *last_detail;	/* and its details (superusers only) */
} AlertRoundResult;

extern void alert_deliver_round(int max, int64 only_id, bool carry,
								AlertRoundResult *result);
extern int	alert_carried_count(void);
extern bool alert_carried_poll(void);
extern Datum alert_carried_destinations(void);
extern int64 alert_next_due_ms(void);

/* sns.c */
typedef struct AlertSnsMessage
{
	const char *topic_arn;
	const char *region;
	const char *message;
	const char *subject;
	const char *severity;
	const char *detector;
	const char *score;
	bool		fifo;
	const char *group_id;
	const char *dedup_id;
} AlertSnsMessage;

extern bool alert_sns_prepare(AlertHttpJob *job, const AlertSnsMessage *msg,
							  const AlertAwsCredentials *creds,
							  char **error);
extern int	alert_sns_classify(const AlertHttpJob *job, char **error);

/* redact.c */
extern void alert_redact_init(void);

/* privs.c: the owner switch of the alert layer */
typedef struct AlertSys
{
	Oid			save_user;
	int			save_sec;
	int			guc_nest;
} AlertSys;

extern void alert_sys_enter(AlertSys *sys, Oid owner);
extern void alert_sys_enter_restricted(AlertSys *sys, Oid role);
extern void alert_sys_leave(AlertSys *sys);

/* worker.c */
extern void alert_shmem_init(void);
extern PGDLLEXPORT void anomaly_alert_sender_main(Datum arg);

/*
 * One pass of a database's scheduler for its sender: starts one when the
 * database has destinations and none runs (stops it when !allowed).
 * Returns why no sender runs when it should, NULL otherwise.
 */
extern const char *alert_schedule(bool allowed);

/* outcome codes */
#define ALERT_SENT		1
#define ALERT_RETRY		2
#define ALERT_DEAD		3
#define ALERT_DEFER		4

#endif							/* ANOMALY_ALERT_H */
