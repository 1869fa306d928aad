/*
 * redact.c
 *	  Keeps the alert layer's secrets out of the server log.
 *
 * PostgreSQL itself logs a reloaded setting's new value ("parameter X
 * changed to Y", at LOG in the postmaster) and, with log_statement = all,
 * every statement (ALTER SYSTEM SET ... included).  An emit_log_hook,
 * installed from _PG_init (so in the postmaster and every child when the
 * library is preloaded), rewrites any message about a secret setting, and
 * hides a statement that names one.
 *
 * It never tells a client whether a text holds a secret: a message that
 * goes to a client is never changed because of a secret value in it (that
 * was a guessing oracle: "SELECT 'guess'::int" came back masked when the
 * guess was right).  Secrets do not reach messages in the first place (no
 * code of the extension formats one); as a second line, a message that
 * holds a current secret value (of at least 6 characters) is redacted in
 * the extension's own background workers, which have no client, and in any
 * other process is kept out of the server log (output_to_server off, so the
 * client's copy is untouched and only the log loses the line).  Whether a
 * line reached the log is visible only to those who may read the log, who
 * may read the settings anyway.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"

#include "alert/alert.h"
#include "compat.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

#define MIN_SECRET_LEN 6
#define MAX_SECRETS 64

static const char *const secret_settings[] = {
	"anomaly.credentials",
	"anomaly.aws_access_key_id",
	"anomaly.aws_secret_access_key",
	"anomaly.aws_session_token",
	NULL
};

/* Adds a secret value to the list when long enough. */
static void
add_secret(const char **list, int *lens, int *n, const char *s, int len)
{
	if (s == NULL || len < MIN_SECRET_LEN || *n >= MAX_SECRETS)
		return;
	list[*n] = s;
	lens[*n] = len;
	(*n)++;
}

/* Collects the current secret values (pointers into the settings). */
static int
collect_secrets(const char **list, int *lens)
{
	int			n = 0;
	const char *p = alert_credentials;

	add_secret(list, lens, &n, alert_aws_secret_access_key,
			   alert_aws_secret_access_key ? strlen(alert_aws_secret_access_key) : 0);
	add_secret(list, lens, &n, alert_aws_session_token,
			   alert_aws_session_token ? strlen(alert_aws_session_token) : 0);
	add_secret(list, lens, &n, getenv("AWS_SECRET_ACCESS_KEY"),
			   getenv("AWS_SECRET_ACCESS_KEY") ? strlen(getenv("AWS_SECRET_ACCESS_KEY")) : 0);
	/* the values of anomaly.credentials, as the parser trims them */
	while (p != NULL && *p != '\0')
	{
		const char *end = p + strcspn(p, ";\n");
		const char *eq = memchr(p, '=', end - p);

		if (eq != NULL)
		{
			const char *v = eq + 1;
			const char *e = end;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
				e--;
			add_secret(list, lens, &n, v, (int) (e - v));
		}
		p = (*end == '\0') ? end : end + 1;
	}
	return n;
}

/* Returns s with every secret replaced, or NULL when s holds none. */
static char *
redact_text(const char *s, const char **secrets, const int *lens, int n)
{
	StringInfoData buf;
	bool		changed = false;
	const char *p = s;

	if (s == NULL || n == 0)
		return NULL;
	initStringInfo(&buf);
	while (*p != '\0')
	{
		int			i;
		bool		hit = false;

		for (i = 0; i < n; i++)
		{
			if (*p == secrets[i][0] && strncmp(p, secrets[i], lens[i]) == 0)
			{
				appendStringInfoString(&buf, "********");
				p += lens[i];
				hit = changed = true;
				break;
			}
		}
		if (!hit)
			appendStringInfoChar(&buf, *p++);
	}
	if (!changed)
	{
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}

/* Replaces *field with its redacted copy when it holds a secret. */
static void
redact_field(char **field, const char **secrets, const int *lens, int n)
{
	char	   *r = redact_text(*field, secrets, lens, n);

	if (r != NULL)
		*field = r;
}

/* Whether s names one of the secret settings (case-insensitively). */
static bool
mentions_secret_setting(const char *s)
{
	int			i;

	if (s == NULL)
		return false;
	for (i = 0; secret_settings[i] != NULL; i++)
	{
		/* the AWS names stand out alone; "credentials" only qualified */
		const char *name = strncmp(secret_settings[i], "anomaly.aws_", 12) == 0 ?
			secret_settings[i] + 8 : secret_settings[i];
		size_t		len = strlen(name);
		const char *p;

		for (p = s; *p != '\0'; p++)
		{
			if (pg_strncasecmp(p, name, len) == 0)
				return true;
		}
	}
	return false;
}

/* Whether this process is one of the extension's background workers. */
static bool
own_worker(void)
{
	return IsBackgroundWorker && MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, "anomaly") == 0;
}

/* Whether a field holds a secret. */
static bool
holds_secret(const char *field, const char **secrets, const int *lens, int n)
{
	char	   *r = redact_text(field, secrets, lens, n);

	if (r == NULL)
		return false;
	pfree(r);
	return true;
}

/* The hook. */
static void
alert_emit_log_hook(ErrorData *edata)
{
	const char *secrets[MAX_SECRETS];
	int			lens[MAX_SECRETS];
	int			n;
	int			i;

	if (edata->message != NULL && strncmp(edata->message, "parameter \"anomaly.", 19) == 0)
	{
		for (i = 0; secret_settings[i] != NULL; i++)
		{
			size_t		len = strlen(secret_settings[i]);

			if (strncmp(edata->message + 11, secret_settings[i], len) == 0 &&
				strncmp(edata->message + 11 + len, "\" changed to ", 13) == 0)
			{
				edata->message = psprintf("parameter \"%s\" changed (value hidden)",
										  secret_settings[i]);
				break;
			}
		}
	}

	/*
	 * A statement that names a secret setting (ALTER SYSTEM SET, say) may
	 * hold a value not yet known here: hide it whole.
	 */
	if (mentions_secret_setting(debug_query_string))
		edata->hide_stmt = true;
	if (mentions_secret_setting(edata->message) &&
		(strstr(edata->message, "statement: ") != NULL ||
		 strncmp(edata->message, "execute ", 8) == 0))
		edata->message = pstrdup("statement hidden: it names a secret setting of anomaly");

	n = collect_secrets(secrets, lens);
	if (n > 0 && own_worker())
	{
		redact_field(&edata->message, secrets, lens, n);
		redact_field(&edata->detail, secrets, lens, n);
		redact_field(&edata->detail_log, secrets, lens, n);
		redact_field(&edata->hint, secrets, lens, n);
		redact_field(&edata->context, secrets, lens, n);
		redact_field(&edata->internalquery, secrets, lens, n);
	}
	else if (n > 0)
	{
		/* the client's copy stays as it is; the log does without the line */
		if (holds_secret(edata->message, secrets, lens, n) ||
			holds_secret(edata->detail, secrets, lens, n) ||
			holds_secret(edata->detail_log, secrets, lens, n) ||
			holds_secret(edata->hint, secrets, lens, n) ||
			holds_secret(edata->context, secrets, lens, n) ||
			holds_secret(edata->internalquery, secrets, lens, n))
			edata->output_to_server = false;
	}
	if (n > 0)
	{
		if (debug_query_string != NULL)
		{
			char	   *r = redact_text(debug_query_string, secrets, lens, n);

			if (r != NULL)
			{
				edata->hide_stmt = true;
				pfree(r);
			}
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Installs the hook (from _PG_init). */
void
alert_redact_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = alert_emit_log_hook;
}
