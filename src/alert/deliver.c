/*
 * deliver.c
 *	  One delivery round: claim due outbox rows, send them, record outcomes.
 *
 * The round runs inside the caller's transaction (anomaly.deliver() from SQL,
 * or the sender worker's own transaction).  Rows are claimed with FOR UPDATE
 * SKIP LOCKED, so rounds in several sessions never send the same row at once;
 * a row is deleted only in the transaction that saw it delivered, so a crash
 * at any point leaves it in the outbox to be sent again (at least once, with
 * the same deduplication id).
 *
 * Outcomes: delivered rows are deleted; transient failures (transport errors,
 * timeouts, HTTP 408/425/429/5xx, SNS throttling) are retried after an
 * exponential backoff with full jitter that honours Retry-After; permanent
 * failures and rows out of attempts move to anomaly.dead_letters with the
 * error; rows over their destination's rate limit are deferred.
 *
 * Each error is kept twice: its class (the HTTP status, SMTP reply code or
 * libcurl's generic error name), which the destination's owner sees in
 * anomaly.outbox, anomaly.dead_letters and test_destination(), and its
 * details (response body, addresses, libcurl's message), which only
 * superusers see (anomaly.delivery_errors, test_destination() when called
 * by one): a response may hold what the destination's server should not
 * tell an admin (an instance-metadata document, say).
 *
 * A credential goes only where anomaly.credential_bindings bound it, and
 * SMTP AUTH only over TLS unless anomaly.smtp_allow_plaintext_auth.
 *
 * A round waits for its slowest transfer, and a destination whose last
 * attempt failed is often one that never answers: the sender worker does
 * not wait for such a destination's one row a round (its probe).  It
 * leases the row instead (its next attempt moved past twice the transfer's
 * timeout, in the round's transaction), lets the transfer run on across
 * rounds, and records its outcome in the first round after it ends.  Until
 * then that destination gets no other row, so one probe per destination is
 * in flight, and at most anomaly.delivery_concurrency in all (each holds a
 * connection: an admin's thousand failing destinations must not take the
 * process's descriptors); a probe beyond them waits a second.  An ended
 * probe is let go only when the round that recorded its outcome commits
 * (if it fails, the next round records it).  A crash leaves the row to be
 * sent again once the lease ends (at least once, as before).  The lease
 * locks nothing: drop_destination(force => true) moves the row to the dead
 * letters meanwhile, and the probe's outcome, recorded when it ends, then
 * says what became of it (anomaly._record: delivered, it is no dead letter).
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/syscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "alert/alert.h"
#include "alert/sha256.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_alert_deliver);
PG_FUNCTION_INFO_V1(anomaly_alert_test_destination);

/* One claimed notification and its outcome. */
typedef struct AlertItem
{
	int64		id;
	char	   *destination;
	char	   *kind;
	int			attempts;
	char	   *dedup_id;
	char	   *target;
	char	   *target_credential;
	char	   *body;
	char	   *subject;
	char	   *headers;
	char	   *credential;
	char	   *signature_header;
	char	   *region;
	char	   *mail_from;
	char	   *rcpt;
	char	   *starttls;
	char	   *username;
	char	   *group_id;
	char	   *severity;
	char	   *detector;
	char	   *score;
	double		rate_limit;		/* <= 0: none */
	int			timeout_ms;		/* 0: the setting */
	int			max_attempts;	/* 0: the setting */
	bool		fifo;

	int			outcome;
	char	   *error;			/* the class, for the destination's owner */
	char	   *detail;			/* in full, for superusers (NULL: the class) */
	int			delay_ms;
	AlertHttpJob *job;
	bool		failing;		/* the destination's last outcome: an error */
	bool		carried;		/* its transfer goes on after the round */
} AlertItem;

/*
 * The sender worker's probes in flight (see the top of the file), each in
 * a memory context of its own under TopMemoryContext: the item (only what
 * classify() and record_outcomes() read) and its job.  An ended probe whose
 * outcome the open transaction wrote is kept until that commits: if it
 * aborts, the next round writes it again.
 */
typedef struct CarriedProbe
{
	MemoryContext cxt;
	AlertItem  *item;
	bool		recorded;		/* its outcome written, not yet committed */
} CarriedProbe;

static CarriedProbe *carried = NULL;
static int	ncarried = 0;
static int	carried_cap = 0;
static bool carried_callback = false;

/*
 * A number of a destination's config, or NULL when it is not one within
 * [lo, hi]: the claim reads every due destination's in one statement, so a
 * value that failed its cast (a rate_limit of 1e400, as 0.1.0 accepted)
 * failed every admin's deliveries, at every round.
 */
#define CONFIG_NUMBER(key, lo, hi, type) \
	"CASE WHEN jsonb_typeof(d.config -> '" key "') = 'number' THEN" \
	" CASE WHEN (d.config ->> '" key "')::numeric BETWEEN " lo " AND " hi \
	" THEN (d.config ->> '" key "')::numeric::" type " END END"

/*
 * Whether a destination's last outcome was an error, from its
 * delivery_counters row c (none: not failing).  Read by the claim's fair
 * share and for each claimed row (which probes the worker carries).
 */
#define LAST_OUTCOME_FAILED(c) \
	"coalesce(" c ".last_error_at > coalesce(" c ".last_success_at, '-infinity'), false)"

#define CLAIM_COLUMNS \
"	SELECT o.id, o.destination, d.kind, o.attempts,\n" \
"		   coalesce(o.dedup_id, 'anomaly-' || o.id),\n" \
"		   CASE d.kind WHEN 'sns' THEN d.config ->> 'topic_arn'\n" \
"					   WHEN 'notify' THEN d.config ->> 'channel'\n" \
"					   ELSE d.config ->> 'url' END,\n" \
"		   d.config ->> 'url_credential',\n" \
"		   anomaly._render(d.kind, d.config, o.subject, o.payload, coalesce(o.dedup_id, 'anomaly-' || o.id), o.id),\n" \
"		   CASE WHEN d.kind = 'sns' THEN anomaly._sns_subject(o.subject) ELSE o.subject END,\n" \
"		   (SELECT string_agg(h.key || ': ' || (h.value #>> '{}'), E'\\n')\n" \
"			FROM jsonb_each(CASE WHEN jsonb_typeof(d.config -> 'headers') = 'object'\n" \
"								 THEN d.config -> 'headers' ELSE '{}' END) h),\n" \
"		   d.config ->> 'credential',\n" \
"		   coalesce(d.config ->> 'signature_header', 'X-Anomaly-Signature'),\n" \
"		   coalesce(d.config ->> 'region', split_part(d.config ->> 'topic_arn', ':', 4)),\n" \
"		   d.config ->> 'from',\n" \
"		   (SELECT string_agg(value #>> '{}', E'\\n') FROM jsonb_array_elements(\n" \
"				CASE WHEN jsonb_typeof(d.config -> 'to') = 'array' THEN d.config -> 'to' ELSE '[]' END)),\n" \
"		   coalesce(d.config ->> 'starttls', 'try'),\n" \
"		   d.config ->> 'username',\n" \
"		   left(coalesce(d.config ->> 'message_group_id', o.payload ->> 'fingerprint', o.destination), 128),\n" \
"		   coalesce(o.payload ->> 'severity', 'info'),\n" \
"		   left(o.payload ->> 'detector', 256),\n" \
"		   CASE WHEN jsonb_typeof(o.payload -> 'score') = 'number' THEN o.payload ->> 'score' END,\n" \
"		   " CONFIG_NUMBER("rate_limit", "0.000001", "1000000", "float8") ",\n" \
"		   " CONFIG_NUMBER("timeout_ms", "100", "600000", "int4") ",\n" \
"		   coalesce(d.config ->> 'topic_arn' LIKE '%.fifo', false),\n" \
"		   " CONFIG_NUMBER("max_attempts", "1", "1000", "int4") ",\n" \
"		   coalesce((SELECT " LAST_OUTCOME_FAILED("c") "\n" \
"					 FROM anomaly.delivery_counters c WHERE c.destination = o.destination), false)\n" \
"	FROM due o JOIN anomaly.destinations d ON d.name = o.destination\n" \
"	ORDER BY o.next_attempt_at, o.id\n"

/*
 * The destinations whose rows a round may claim: enabled, with queued
 * rows, and not among the parameter carried (text[]), the destinations
 * whose probe the sender worker carries.  The destinations with queued
 * rows are found by skipping through outbox_destination_idx (one probe
 * each, one for an empty outbox, however many destinations exist).
 * Shared by the claim and by the worker's wait, which must not count a
 * row the claim will not take.
 */
#define CLAIMABLE_DESTS(carried) \
"WITH RECURSIVE queued AS (\n" \
"	(SELECT o.destination FROM anomaly.outbox o ORDER BY o.destination LIMIT 1)\n" \
"	UNION ALL\n" \
"	SELECT (SELECT o.destination FROM anomaly.outbox o\n" \
"			WHERE o.destination > q.destination ORDER BY o.destination LIMIT 1)\n" \
"	FROM queued q WHERE q.destination IS NOT NULL),\n" \
"dests AS (\n" \
"	SELECT x.name, " LAST_OUTCOME_FAILED("c") " AS failing, c.last_error_at\n" \
"	FROM queued q JOIN anomaly.destinations x ON x.name = q.destination\n" \
"	LEFT JOIN anomaly.delivery_counters c ON c.destination = x.name\n" \
"	WHERE x.enabled AND x.name <> ALL (" carried "))"

/*
 * The due rows of a round, shared fairly between the destinations that have
 * any: each first gets its oldest ceil(max / destinations queued), then the
 * oldest due rows of all fill what is left of the round.  Taking only the
 * oldest rows of all, a flood to one destination (an admin's, or a dead
 * endpoint's retries) held every other destination's notifications back
 * until it was delivered.  A destination whose last outcome was an error
 * sends one row a round, and none of the rest: a round waits for its
 * slowest transfer, and a silent endpoint's share would take that many
 * timeouts, in waves of the concurrent transfers, from everyone's round.
 * A destination's rows keep their order.  Candidates are chosen without
 * locks, then locked.  At most $3 failing destinations send their row (the
 * probes the worker may still start): those whose last error is oldest,
 * so that each gets its turn.  By their rows' age, the destinations that
 * had just had theirs came first again (their rows were queued long ago,
 * the others' were put back by a second each time), and an admin's failing
 * destinations held every probe, another's never had one.
 */
static const char *claim_due_sql =
CLAIMABLE_DESTS("$2") ",\n"
"probing AS (\n"
"	SELECT dests.name FROM dests\n"
"	WHERE dests.failing AND EXISTS (SELECT 1 FROM anomaly.outbox o\n"
"		WHERE o.destination = dests.name AND o.next_attempt_at <= now())\n"
"	ORDER BY dests.last_error_at, dests.name\n"
"	LIMIT $3),\n"
"share AS (\n"
"	SELECT (($1 + count(*) - 1) / greatest(count(*), 1))::int AS n FROM dests),\n"
"pick AS (\n"
"	SELECT u.id FROM (\n"
"		SELECT c.id, 0 AS pass, c.next_attempt_at\n"
"		FROM dests CROSS JOIN share CROSS JOIN LATERAL (\n"
"			SELECT o.id, o.next_attempt_at FROM anomaly.outbox o\n"
"			WHERE o.destination = dests.name AND o.next_attempt_at <= now()\n"
"			ORDER BY o.next_attempt_at, o.id\n"
"			LIMIT CASE WHEN NOT dests.failing THEN share.n\n"
"					   WHEN dests.name IN (SELECT name FROM probing) THEN 1 ELSE 0 END) c\n"
"		UNION ALL\n"
"		(SELECT o.id, 1, o.next_attempt_at FROM anomaly.outbox o\n"
"		 WHERE o.next_attempt_at <= now()\n"
"		   AND EXISTS (SELECT 1 FROM dests\n"
"					   WHERE dests.name = o.destination AND NOT dests.failing)\n"
"		 ORDER BY o.next_attempt_at, o.id\n"
"		 LIMIT $1)) u\n"
"	GROUP BY u.id\n"
"	ORDER BY min(u.pass), min(u.next_attempt_at), u.id\n"
"	LIMIT $1),\n"
"due AS (\n"
"	SELECT o.* FROM anomaly.outbox o\n"
"	WHERE o.id IN (SELECT id FROM pick) AND o.next_attempt_at <= now()\n"
"	FOR UPDATE OF o SKIP LOCKED)\n"
CLAIM_COLUMNS;

/*
 * The milliseconds until the next row the worker's claim would take is due
 * (NULL: none), $1 and $2 being the claim's $2 and $3: a disabled
 * destination's rows, or a failing destination's while the probes are at
 * their cap, are not, and counted as due they made the worker run a round
 * every 10 ms.
 */
static const char *next_due_sql =
CLAIMABLE_DESTS("$1") "\n"
"SELECT (extract(epoch FROM min(n.next_attempt_at) - clock_timestamp()) * 1000)::int8\n"
"FROM dests CROSS JOIN LATERAL (\n"
"	SELECT o.next_attempt_at FROM anomaly.outbox o\n"
"	WHERE o.destination = dests.name\n"
"	ORDER BY o.next_attempt_at, o.id LIMIT 1) n\n"
"WHERE $2 > 0 OR NOT dests.failing";

static const char *claim_one_sql =
"WITH due AS (\n"
"	SELECT o.* FROM anomaly.outbox o WHERE o.id = $4 AND $1 > 0 AND $2 IS NOT NULL AND $3 IS NOT NULL\n"
"	FOR UPDATE OF o SKIP LOCKED)\n"
CLAIM_COLUMNS;

/* Rate-limit state per destination, for the life of the process. */
typedef struct RateBucket
{
	char		name[NAMEDATALEN];
	double		tokens;			/* 0 .. burst */
	TimestampTz last;
	uint64		round;			/* round of the deferred count */
	int			deferred;		/* rows deferred in that round */
} RateBucket;

static HTAB *buckets = NULL;
static uint64 current_round = 0;

/*
 * Takes a token of dest's bucket (rate per second, burst of one second);
 * returns 0, or the ms to wait: rows deferred in one round are spread over
 * the coming slots, one per 1/rate seconds.
 */
static int
rate_take(const char *dest, double rate)
{
	RateBucket *b;
	bool		found;
	char		key[NAMEDATALEN];
	TimestampTz now = GetCurrentTimestamp();
	double		burst = Max(1.0, rate);

	if (buckets == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(RateBucket);
		buckets = hash_create("anomaly rate limits", 16, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, dest, sizeof(key));
	b = hash_search(buckets, key, HASH_ENTER, &found);
	if (!found)
	{
		b->tokens = burst;
		b->last = now;
		b->round = 0;
		b->deferred = 0;
	}
	if (b->round != current_round)
	{
		b->round = current_round;
		b->deferred = 0;
	}
	b->tokens = Min(burst, b->tokens + rate * (double) (now - b->last) / 1e6);
	b->last = now;
	if (b->tokens >= 1.0)
	{
		b->tokens -= 1.0;
		return 0;
	}
	b->deferred++;
	/* at most a day: a slow rate times many rows must not overflow int */
	return (int) Min(ceil(((1.0 - b->tokens) + (b->deferred - 1)) / rate * 1000.0) + 1,
					 86400000.0);
}

/*
 * Whether a message may hold a failure's details: only where superusers
 * alone read messages, a worker's (the server log) or a superuser's
 * session.  Any role may set client_min_messages = debug1, and deliver()
 * and test_destination() run in the caller's session: an admin is shown the
 * class, as in the tables.
 */
static bool
details_shown(void)
{
	return MyBgworkerEntry != NULL || superuser_arg(GetSessionUserId());
}

/* The wait before the next attempt: exponential backoff, full jitter. */
static int
backoff_ms(int attempts, long retry_after_ms)
{
	double		cap = (double) alert_retry_base_ms * pow(2.0, Min(attempts, 30));
	double		delay;

	cap = Min(cap, (double) alert_retry_max_ms);
	delay = compat_random_double() * cap;
	if (retry_after_ms >= 0 && (double) retry_after_ms > delay)
		delay = Min((double) retry_after_ms, (double) alert_retry_max_ms);
	return (int) delay;
}

/* Column i (1-based) as a palloc'd string, or NULL. */
static char *
col(HeapTuple tup, TupleDesc desc, int i)
{
	return SPI_getvalue(tup, desc, i);
}

/* Adds "Name: value" lines (newline-separated) to a header list. */
static struct curl_slist *
add_header_lines(struct curl_slist *list, const char *lines)
{
	char	   *copy;
	char	   *save = NULL;
	char	   *line;

	if (lines == NULL)
		return list;
	copy = pstrdup(lines);
	for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		list = curl_slist_append(list, line);
	return list;
}

/* A header list of one line. */
static struct curl_slist *
add_header(struct curl_slist *list, const char *fmt, const char *value)
{
	char	   *line = psprintf(fmt, value);

	list = curl_slist_append(list, line);
	return list;
}

/*
 * Marks an item done with an outcome; error is the class of a failure and
 * detail its full description (NULL when the class says everything).
 */
static void
set_outcome2(AlertItem *item, int outcome, char *error, char *detail,
			 long retry_after_ms)
{
	int			max_attempts = item->max_attempts > 0 ? item->max_attempts : alert_max_attempts;

	if (outcome == ALERT_RETRY && item->attempts + 1 >= max_attempts)
	{
		outcome = ALERT_DEAD;
		error = psprintf("gave up after %d attempts: %s", item->attempts + 1, error);
		if (detail != NULL)
			detail = psprintf("gave up after %d attempts: %s", item->attempts + 1, detail);
	}
	item->outcome = outcome;
	item->error = error;
	item->detail = detail;
	if (outcome == ALERT_RETRY)
		item->delay_ms = backoff_ms(item->attempts, retry_after_ms);
}

/* set_outcome2 for failures whose message holds nothing to hide. */
static void
set_outcome(AlertItem *item, int outcome, char *error, long retry_after_ms)
{
	set_outcome2(item, outcome, error, NULL, retry_after_ms);
}

/*
 * Fails an item whose credential cannot be used: not defined (yet) is
 * retried, not bound is permanent and names the fix.
 */
static void
credential_failure(AlertItem *item, const char *name, const char *what, int status)
{
	if (status == ALERT_CRED_UNDEFINED)
		set_outcome(item, ALERT_RETRY,
					psprintf("credential \"%s\" (%s) is not defined", name, what), -1);
	else
		set_outcome(item, ALERT_DEAD,
					psprintf("credential \"%s\" (%s) is not bound to this destination's URL: a superuser must add it to anomaly.credential_bindings",
							 name, what), -1);
}

/* Builds the HTTP job of a webhook or Slack notification. */
static bool
prepare_http(AlertItem *item, AlertHttpJob *job)
{
	const char *url = item->target;
	struct curl_slist *h = NULL;

	if (item->target_credential != NULL)
	{
		int			status;

		url = alert_credential_for(item->target_credential, NULL, &status);
		if (url == NULL)
		{
			credential_failure(item, item->target_credential, "the URL", status);
			return false;
		}
		if (pg_strncasecmp(url, "http://", 7) != 0 && pg_strncasecmp(url, "https://", 8) != 0)
		{
			set_outcome(item, ALERT_DEAD,
						psprintf("credential \"%s\" is not an http(s) URL", item->target_credential), -1);
			return false;
		}
	}
	job->url = url;
	job->protocols = "http,https";
	job->body = item->body;
	job->body_len = strlen(item->body);
	job->timeout_ms = item->timeout_ms;

	h = curl_slist_append(h, "Content-Type: application/json; charset=utf-8");
	h = curl_slist_append(h, "Expect:");
	if (strcmp(item->kind, "webhook") == 0)
	{
		char		ts[32];

		h = add_header(h, "X-Anomaly-Delivery: %s", item->dedup_id);
		h = add_header(h, "X-Anomaly-Attempt: %s", psprintf("%d", item->attempts + 1));
		snprintf(ts, sizeof(ts), "%ld", (long) time(NULL));
		h = add_header(h, "X-Anomaly-Timestamp: %s", ts);
		if (item->credential != NULL)
		{
			int			status;
			char	   *secret = alert_credential_for(item->credential, url, &status);
			AnomalyHmacSha256Ctx ctx;
			uint8_t		mac[ANOMALY_SHA256_DIGEST_LEN];
			char		hex[ANOMALY_SHA256_HEX_LEN + 1];

			if (secret == NULL)
			{
				alert_free_headers(h);
				credential_failure(item, item->credential, "the signing secret", status);
				return false;
			}
			anomaly_hmac_sha256_init(&ctx, secret, strlen(secret));
			anomaly_hmac_sha256_update(&ctx, ts, strlen(ts));
			anomaly_hmac_sha256_update(&ctx, ".", 1);
			anomaly_hmac_sha256_update(&ctx, item->body, job->body_len);
			anomaly_hmac_sha256_final(&ctx, mac);
			anomaly_hex_encode(mac, sizeof(mac), hex);
			explicit_bzero(secret, strlen(secret));
			explicit_bzero(&ctx, sizeof(ctx));
			h = curl_slist_append(h, psprintf("%s: t=%s,sha256=%s", item->signature_header, ts, hex));
		}
		h = add_header_lines(h, item->headers);
	}
	job->headers = h;
	return true;
}

/* Builds the SMTP job of an e-mail notification. */
static bool
prepare_smtp(AlertItem *item, AlertHttpJob *job)
{
	char	   *save = NULL;
	char	   *addr;
	char	   *rcpts = item->rcpt ? pstrdup(item->rcpt) : pstrdup("");

	job->smtp = true;
	job->url = item->target;
	job->protocols = "smtp,smtps";
	job->body = item->body;
	job->body_len = strlen(item->body);
	job->timeout_ms = item->timeout_ms;
	job->mail_from = psprintf("<%s>", item->mail_from);
	for (addr = strtok_r(rcpts, "\n", &save); addr != NULL; addr = strtok_r(NULL, "\n", &save))
		job->rcpt = curl_slist_append(job->rcpt, psprintf("<%s>", addr));
	if (strcmp(item->starttls, "required") == 0)
		job->use_ssl = CURLUSESSL_ALL;
	else if (strcmp(item->starttls, "none") == 0)
		job->use_ssl = CURLUSESSL_NONE;
	else
		job->use_ssl = CURLUSESSL_TRY;
	if (item->username != NULL)
	{
		/* AUTH only where nobody on the way can read it */
		if (!alert_smtp_allow_plaintext_auth && job->use_ssl != CURLUSESSL_ALL &&
			pg_strncasecmp(item->target, "smtps://", 8) != 0)
		{
			set_outcome(item, ALERT_DEAD,
						pstrdup("SMTP AUTH over a connection that may not be encrypted is refused: use an smtps:// URL or \"starttls\": \"required\" (or a superuser sets anomaly.smtp_allow_plaintext_auth)"),
						-1);
			return false;
		}
		job->username = item->username;
		if (item->credential != NULL)
		{
			int			status;

			job->password = alert_credential_for(item->credential, item->target, &status);
			if (job->password == NULL)
			{
				credential_failure(item, item->credential, "the SMTP password", status);
				return false;
			}
		}
	}
	return true;
}

/*
 * The class of an SNS failure: the HTTP status and SNS's error code (one of
 * a fixed set of words, from AWS), without the message.
 */
static char *
sns_class(const AlertHttpJob *job, const char *error)
{
	char		prefix[64];
	size_t		plen;

	if (job->curl_code != CURLE_OK || job->status <= 0 || error == NULL)
		return alert_http_class(job);
	snprintf(prefix, sizeof(prefix), "SNS HTTP %ld ", job->status);
	plen = strlen(prefix);
	if (strncmp(error, prefix, plen) == 0)
	{
		size_t		n = strspn(error + plen,
							   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.");

		if (n > 0 && n < 64)
			return psprintf("%s%.*s", prefix, (int) n, error + plen);
	}
	return psprintf("SNS HTTP %ld", job->status);
}

/* Classifies a finished webhook, Slack or SMTP transfer. */
static void
classify(AlertItem *item)
{
	AlertHttpJob *job = item->job;

	/* refused by the allowance: permanent, whatever the kind */
	if (alert_http_refused(job))
	{
		set_outcome2(item, ALERT_DEAD, alert_http_class(job), alert_http_describe(job), -1);
		return;
	}
	if (strcmp(item->kind, "sns") == 0)
	{
		char	   *error = NULL;
		int			outcome = alert_sns_classify(job, &error);

		if (outcome != ALERT_SENT)
			set_outcome2(item, outcome, sns_class(job, error), error, job->retry_after_ms);
		else
			set_outcome(item, outcome, NULL, -1);
		return;
	}
	if (job->smtp)
	{
		if (job->curl_code == CURLE_OK)
			set_outcome(item, ALERT_SENT, NULL, -1);
		else if (job->curl_code == CURLE_LOGIN_DENIED ||
				 (job->status >= 500 && job->status < 600))
			set_outcome2(item, ALERT_DEAD, alert_http_class(job), alert_http_describe(job), -1);
		else
			set_outcome2(item, ALERT_RETRY, alert_http_class(job), alert_http_describe(job), -1);
		return;
	}
	if (job->curl_code != CURLE_OK || job->body_too_large || job->headers_too_large)
		set_outcome2(item, alert_http_transient_curl(job->curl_code) ? ALERT_RETRY : ALERT_DEAD,
					 alert_http_class(job), alert_http_describe(job), job->retry_after_ms);
	else if (job->status >= 200 && job->status < 300)
		set_outcome(item, ALERT_SENT, NULL, -1);
	else if (job->status == 408 || job->status == 425 || job->status == 429 ||
			 job->status >= 500)
		set_outcome2(item, ALERT_RETRY, alert_http_class(job), alert_http_describe(job),
					 job->retry_after_ms);
	else
		set_outcome2(item, ALERT_DEAD, alert_http_class(job), alert_http_describe(job), -1);
}

/*
 * Sends one NOTIFY (delivered when the round's transaction commits).  Any
 * role may LISTEN on the channel: the body is what _render() made of it, a
 * reference to the alert unless a superuser set the destination's payload
 * to full.
 */
static void
send_notify(AlertItem *item)
{
	Async_Notify(item->target, item->body);
	set_outcome(item, ALERT_SENT, NULL, -1);
}

/* Writes the outcomes through anomaly._record(). */
static void
record_outcomes(AlertItem *items, int n)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *outcomes = palloc(sizeof(Datum) * n);
	Datum	   *errors = palloc(sizeof(Datum) * n);
	bool	   *error_nulls = palloc(sizeof(bool) * n);
	Datum	   *details = palloc(sizeof(Datum) * n);
	bool	   *detail_nulls = palloc(sizeof(bool) * n);
	Datum	   *delays = palloc(sizeof(Datum) * n);
	int			dims[1];
	int			lbs[1] = {1};
	int			m = 0;
	int			i;
	Oid			types[5] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID};
	Datum		values[5];
	int			rc;

	for (i = 0; i < n; i++)
	{
		const char *o;

		switch (items[i].outcome)
		{
			case ALERT_SENT:
				o = "sent";
				break;
			case ALERT_RETRY:
				o = "retry";
				break;
			case ALERT_DEAD:
				o = "dead";
				break;
			case ALERT_DEFER:
				o = "defer";
				break;
			default:
				continue;
		}
		ids[m] = Int64GetDatum(items[i].id);
		outcomes[m] = CStringGetTextDatum(o);
		error_nulls[m] = items[i].error == NULL;
		errors[m] = items[i].error ? CStringGetTextDatum(items[i].error) : (Datum) 0;
		detail_nulls[m] = items[i].detail == NULL;
		details[m] = items[i].detail ? CStringGetTextDatum(items[i].detail) : (Datum) 0;
		delays[m] = Int32GetDatum(items[i].delay_ms);
		m++;
	}
	if (m == 0)
		return;
	dims[0] = m;
	values[0] = PointerGetDatum(construct_array(ids, m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(outcomes, m, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_md_array(errors, error_nulls, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(details, detail_nulls, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_array(delays, m, INT4OID, 4, true, TYPALIGN_INT));
	rc = SPI_execute_with_args("SELECT anomaly._record($1, $2, $3, $4, $5)", 5, types, values,
							   NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "anomaly._record failed: %s", SPI_result_code_string(rc));
}

/* Overwrites the SMTP passwords looked up for a round's jobs. */
static void
forget_passwords(AlertItem *items, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		if (items[i].job != NULL && items[i].job->password != NULL)
			explicit_bzero((char *) items[i].job->password,
								strlen(items[i].job->password));
	}
}

/* A copy in cxt of len bytes at s and a NUL, or NULL for NULL. */
static char *
copy_in(MemoryContext cxt, const char *s, size_t len)
{
	char	   *c;

	if (s == NULL)
		return NULL;
	c = MemoryContextAlloc(cxt, len + 1);
	memcpy(c, s, len);
	c[len] = '\0';
	return c;
}

/* Counts an item's outcome in result, and logs its error (DEBUG1). */
static void
count_outcome(const AlertItem *it, AlertRoundResult *result)
{
	switch (it->outcome)
	{
		case ALERT_SENT:
			result->sent++;
			break;
		case ALERT_RETRY:
			result->retried++;
			break;
		case ALERT_DEAD:
			result->dead++;
			break;
		case ALERT_DEFER:
			if (it->carried)
				result->carried++;
			else
				result->deferred++;
			break;
	}
	if (it->error)
		elog(DEBUG1, "anomaly: notification %lld to \"%s\": %s",
			 (long long) it->id, it->destination,
			 it->detail && details_shown() ? it->detail : it->error);
}

/* copy_in of a string, or NULL. */
static char *
copy_str(MemoryContext cxt, const char *s)
{
	return s == NULL ? NULL : copy_in(cxt, s, strlen(s));
}

/* Overwrites a carried job's copies of the password and URL. */
static void
forget_carried_copies(AlertHttpJob *job)
{
	if (job->password != NULL)
		explicit_bzero((char *) job->password, strlen(job->password));
	/* a URL may be a credential's */
	if (job->url != NULL)
		explicit_bzero((char *) job->url, strlen(job->url));
}

/* Frees a carried probe's job and context, secrets overwritten first. */
static void
carried_release(CarriedProbe *cp)
{
	AlertHttpJob *job = cp->item->job;

	alert_http_job_release(job);
	alert_free_headers(job->headers);
	alert_free_headers(job->rcpt);
	forget_carried_copies(job);
	MemoryContextDelete(cp->cxt);
}

/*
 * At the end of the sender worker's transactions: once one that wrote ended
 * probes' outcomes commits, they are done; if it aborts, their outcomes are
 * gone with it, and the next round writes them again (their rows are
 * leased, so nothing else sends them meanwhile).  Neither may fail.
 */
static void
carried_xact_callback(XactEvent event, void *arg)
{
	int			k = 0;

	if (ncarried == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			for (int i = 0; i < ncarried; i++)
			{
				if (carried[i].recorded)
					carried_release(&carried[i]);
				else
					carried[k++] = carried[i];
			}
			ncarried = k;
			break;
		case XACT_EVENT_ABORT:
			for (int i = 0; i < ncarried; i++)
				carried[i].recorded = false;
			break;
		default:
			break;
	}
}

/*
 * Moves a prepared item's transfer to the carried probes and starts it.
 * The item keeps no part of the job (its header lists go with it).  False
 * when the transfer could not be started: the round sends it as usual.
 */
static bool
carry_probe(AlertItem *it)
{
	MemoryContext cxt;
	AlertItem  *c;
	AlertHttpJob *j;
	AlertHttpJob *from = it->job;
	bool		started;

	if (ncarried == carried_cap)
	{
		int			cap = Max(carried_cap * 2, 8);

		carried = carried == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(CarriedProbe) * cap) :
			repalloc(carried, sizeof(CarriedProbe) * cap);
		carried_cap = cap;
	}
	cxt = AllocSetContextCreate(TopMemoryContext, "anomaly carried probe",
								ALLOCSET_SMALL_SIZES);
	c = MemoryContextAllocZero(cxt, sizeof(AlertItem));
	j = MemoryContextAlloc(cxt, sizeof(AlertHttpJob));
	c->id = it->id;
	c->destination = copy_str(cxt, it->destination);
	c->kind = copy_str(cxt, it->kind);
	c->attempts = it->attempts;
	c->max_attempts = it->max_attempts;
	*j = *from;
	j->url = copy_str(cxt, from->url);
	j->protocols = copy_str(cxt, from->protocols);
	j->body = copy_in(cxt, from->body, from->body_len);
	j->mail_from = copy_str(cxt, from->mail_from);
	j->username = copy_str(cxt, from->username);
	j->password = copy_str(cxt, from->password);
	c->job = j;

	/*
	 * The context is under TopMemoryContext, which an error does not reset:
	 * its copies of the secrets go with it whatever happens.
	 */
	PG_TRY();
	{
		started = alert_http_carry(j);
	}
	PG_CATCH();
	{
		forget_carried_copies(j);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!started)
	{
		forget_carried_copies(j);
		MemoryContextDelete(cxt);
		return false;
	}
	carried[ncarried].cxt = cxt;
	carried[ncarried].item = c;
	carried[ncarried].recorded = false;
	ncarried++;
	/* the lists are the carried job's now; the item keeps nothing */
	from->headers = NULL;
	from->rcpt = NULL;
	if (from->password != NULL)
		explicit_bzero((char *) from->password, strlen(from->password));
	it->job = NULL;
	it->carried = true;
	return true;
}

/*
 * How long a carried probe's row is leased: past twice its transfer's
 * timeout and a minute, so that it is not due again while its transfer
 * may still run, even behind a round of slow transfers.
 */
static int
lease_ms(const AlertItem *it)
{
	int			t = alert_request_timeout_ms;

	if (it->timeout_ms > 0)
		t = Min(t, it->timeout_ms);
	return 2 * t + 60000;
}

/* Whether the sender worker has carried probes in flight or ended. */
int
alert_carried_count(void)
{
	return ncarried;
}

/* The carried probes still in flight (not those ended, recorded or not). */
static int
carried_in_flight(void)
{
	int			n = 0;

	for (int k = 0; k < ncarried; k++)
		if (!carried[k].item->job->done)
			n++;
	return n;
}

/*
 * Drives the carried probes; true when one has ended since the last call
 * (its outcome waits for the next round).
 */
bool
alert_carried_poll(void)
{
	bool		ended = false;

	while (alert_http_carried_done() != NULL)
		ended = true;
	return ended;
}

/*
 * The destinations with a probe in flight, as text[] in the current memory
 * context (an empty array when none).
 */
Datum
alert_carried_destinations(void)
{
	Datum	   *names = palloc(sizeof(Datum) * Max(ncarried, 1));
	int			n = 0;

	for (int k = 0; k < ncarried; k++)
		if (!carried[k].item->job->done)
			names[n++] = CStringGetTextDatum(carried[k].item->destination);
	return PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Classifies the carried probes that have ended and records their outcomes
 * (SPI connected, in the round's memory context); counts them in result.
 */
static void
record_carried(AlertRoundResult *result)
{
	AlertItem  *done;
	int			n = 0;
	int			k;

	if (ncarried == 0)
		return;
	(void) alert_carried_poll();
	done = palloc0(sizeof(AlertItem) * ncarried);
	for (k = 0; k < ncarried; k++)
	{
		AlertItem  *it = carried[k].item;

		if (!it->job->done || carried[k].recorded)
			continue;
		/* its error and details, if an aborted round wrote them, are gone */
		classify(it);
		done[n] = *it;
		done[n].job = NULL;
		count_outcome(it, result);
		n++;
	}
	if (n == 0)
		return;
	if (!carried_callback)
	{
		RegisterXactCallback(carried_xact_callback, NULL);
		carried_callback = true;
	}
	record_outcomes(done, n);
	/* done when the round commits (carried_xact_callback) */
	for (k = 0; k < ncarried; k++)
		if (carried[k].item->job->done)
			carried[k].recorded = true;
}

/*
 * The sender worker's wait: milliseconds until the next row its claim would
 * take is due, 0 when one is, -1 when none is queued.  In the current
 * transaction.
 */
int64
alert_next_due_ms(void)
{
	Oid			types[2] = {TEXTARRAYOID, INT4OID};
	Datum		values[2];
	int64		ms = -1;
	AlertSys	sys;
	bool		isnull;

	alert_sys_enter(&sys, GetUserId());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = alert_carried_destinations();
	values[1] = Int32GetDatum(Max(alert_concurrency - carried_in_flight(), 0));
	if (SPI_execute_with_args(next_due_sql, 2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading the next due outbox row failed");
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			ms = Max(DatumGetInt64(d), 0);
	}
	SPI_finish();
	alert_sys_leave(&sys);
	return ms;
}

/*
 * One round: claims up to max due rows (or only the row only_id when it is
 * not 0), sends them, records the outcomes.  Runs in the current transaction.
 * With carry (the sender worker), a failing destination's probe is carried
 * over instead of waited for, and the ended probes are recorded first.
 */
void
alert_deliver_round(int max, int64 only_id, bool carry, AlertRoundResult *result)
{
	MemoryContext round_cxt;
	MemoryContext old;
	Oid			types[4] = {INT4OID, TEXTARRAYOID, INT4OID, INT8OID};
	Datum		values[4];
	int			rc;
	int			n;
	int			i;
	AlertItem  *items;
	AlertHttpJob **jobs;
	int			njobs = 0;
	AlertAwsCredentials aws;
	bool		have_aws = false;
	bool		aws_tried = false;
	char		aws_error[256];
	AlertSys	sys;

	memset(result, 0, sizeof(*result));
	memset(&aws, 0, sizeof(aws));
	current_round++;

	/*
	 * Whoever runs the round (the sender worker, deliver(), test_destination),
	 * its SQL runs with the extension's search_path.
	 */
	alert_sys_enter(&sys, GetUserId());
	round_cxt = AllocSetContextCreate(CurrentMemoryContext, "anomaly delivery round",
									  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(round_cxt);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (carry)
		record_carried(result);
	values[0] = Int32GetDatum(max);
	values[1] = carry ? alert_carried_destinations() :
		PointerGetDatum(construct_empty_array(TEXTOID));
	/* deliver() and test_destination() send every failing one's row */
	values[2] = Int32GetDatum(carry ? Max(alert_concurrency - carried_in_flight(), 0) : max);
	values[3] = Int64GetDatum(only_id);
	rc = SPI_execute_with_args(only_id != 0 ? claim_one_sql : claim_due_sql,
							   only_id != 0 ? 4 : 3, types, values,
							   NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "claiming outbox rows failed: %s", SPI_result_code_string(rc));

	n = (int) SPI_processed;
	result->claimed = n;
	MemoryContextSwitchTo(round_cxt);
	items = palloc0(sizeof(AlertItem) * Max(n, 1));
	jobs = palloc0(sizeof(AlertHttpJob *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AlertItem  *it = &items[i];
		char	   *s;

		it->id = strtoll(col(tup, desc, 1), NULL, 10);
		it->destination = col(tup, desc, 2);
		it->kind = col(tup, desc, 3);
		it->attempts = atoi(col(tup, desc, 4));
		it->dedup_id = col(tup, desc, 5);
		it->target = col(tup, desc, 6);
		it->target_credential = col(tup, desc, 7);
		it->body = col(tup, desc, 8);
		it->subject = col(tup, desc, 9);
		it->headers = col(tup, desc, 10);
		it->credential = col(tup, desc, 11);
		it->signature_header = col(tup, desc, 12);
		it->region = col(tup, desc, 13);
		it->mail_from = col(tup, desc, 14);
		it->rcpt = col(tup, desc, 15);
		it->starttls = col(tup, desc, 16);
		it->username = col(tup, desc, 17);
		it->group_id = col(tup, desc, 18);
		it->severity = col(tup, desc, 19);
		it->detector = col(tup, desc, 20);
		it->score = col(tup, desc, 21);
		s = col(tup, desc, 22);
		it->rate_limit = s ? strtod(s, NULL) : 0;
		s = col(tup, desc, 23);
		it->timeout_ms = s ? atoi(s) : 0;
		s = col(tup, desc, 24);
		it->fifo = s && s[0] == 't';
		s = col(tup, desc, 25);
		it->max_attempts = s ? atoi(s) : 0;
		s = col(tup, desc, 26);
		it->failing = s && s[0] == 't';
		if (it->body == NULL)
			it->body = pstrdup("");
	}

	/* rate limits, NOTIFY, and the transfers to make */
	for (i = 0; i < n; i++)
	{
		AlertItem  *it = &items[i];
		AlertHttpJob *job;
		bool		ok = false;

		if (it->rate_limit > 0 && only_id == 0)
		{
			int			wait = rate_take(it->destination, it->rate_limit);

			if (wait > 0)
			{
				it->outcome = ALERT_DEFER;
				it->delay_ms = wait;
				continue;
			}
		}
		if (strcmp(it->kind, "notify") == 0)
		{
			send_notify(it);
			continue;
		}
		job = palloc0(sizeof(AlertHttpJob));
		if (strcmp(it->kind, "webhook") == 0 || strcmp(it->kind, "slack") == 0)
			ok = prepare_http(it, job);
		else if (strcmp(it->kind, "email") == 0)
			ok = prepare_smtp(it, job);
		else if (strcmp(it->kind, "sns") == 0)
		{
			AlertSnsMessage msg;
			char	   *error = NULL;

			if (!aws_tried)
			{
				have_aws = alert_aws_credentials(&aws, aws_error, sizeof(aws_error));
				aws_tried = true;
			}
			if (!have_aws)
			{
				set_outcome2(it, ALERT_RETRY, pstrdup("no usable AWS credentials"),
							 pstrdup(aws_error), -1);
				continue;
			}
			memset(&msg, 0, sizeof(msg));
			msg.topic_arn = it->target;
			msg.region = it->region;
			msg.message = it->body;
			msg.subject = it->subject;
			msg.severity = it->severity;
			msg.detector = it->detector;
			msg.score = it->score;
			msg.fifo = it->fifo;
			msg.group_id = it->group_id;
			msg.dedup_id = it->dedup_id;
			job->timeout_ms = it->timeout_ms;
			ok = alert_sns_prepare(job, &msg, &aws, &error);
			if (!ok)
				set_outcome(it, ALERT_DEAD, error, -1);
		}
		else
			set_outcome(it, ALERT_DEAD, psprintf("unknown destination kind \"%s\"", it->kind), -1);
		if (ok)
		{
			it->job = job;
			if (carry && it->failing && carried_in_flight() >= alert_concurrency)
			{
				/* as many probes in flight as transfers in a round: wait */
				alert_free_headers(job->headers);
				alert_free_headers(job->rcpt);
				if (job->password != NULL)
					explicit_bzero((char *) job->password, strlen(job->password));
				it->job = NULL;
				it->outcome = ALERT_DEFER;
				it->delay_ms = 1000;
				continue;
			}
			if (carry && it->failing && carry_probe(it))
			{
				it->outcome = ALERT_DEFER;
				it->delay_ms = lease_ms(it);
				continue;
			}
			jobs[njobs++] = job;
		}
	}
	alert_aws_credentials_clear(&aws);

	if (njobs > 0)
	{
		PG_TRY();
		{
			alert_http_run(jobs, njobs, alert_concurrency);
		}
		PG_CATCH();
		{
			forget_passwords(items, n);
			PG_RE_THROW();
		}
		PG_END_TRY();
		forget_passwords(items, n);
	}

	for (i = 0; i < n; i++)
	{
		AlertItem  *it = &items[i];

		if (it->job != NULL)
		{
			classify(it);
			alert_http_job_release(it->job);
			alert_free_headers(it->job->headers);
			alert_free_headers(it->job->rcpt);
		}
		count_outcome(it, result);
	}

	record_outcomes(items, n);
	if (n == 1 && items[0].error != NULL)
	{
		MemoryContextSwitchTo(old);
		result->last_error = pstrdup(items[0].error);
		result->last_detail = pstrdup(items[0].detail ? items[0].detail : items[0].error);
	}
	SPI_finish();
	MemoryContextSwitchTo(old);
	MemoryContextDelete(round_cxt);
	alert_sys_leave(&sys);
}

/* SQL: anomaly.deliver(max integer) -> integer, one round. */
Datum
anomaly_alert_deliver(PG_FUNCTION_ARGS)
{
	int			max = PG_ARGISNULL(0) ? 100 : PG_GETARG_INT32(0);
	AlertRoundResult res;

	if (max < 1 || max > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max must be between 1 and 10000")));
	alert_deliver_round(max, 0, false, &res);
	PG_RETURN_INT32(res.sent);
}

/*
 * SQL: anomaly.test_destination(name) -> (ok, detail).  Not SECURITY
 * DEFINER: the caller must own the destination (or be a superuser), and
 * sees the failure's details only when a superuser; the work runs as the
 * function's owner.
 */
Datum
anomaly_alert_test_destination(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	Oid			caller = GetUserId();
	bool		full = superuser_arg(caller);
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	Oid			idtypes[1] = {INT8OID};
	Datum		idargs[1];
	int64		id;
	bool		isnull;
	AlertRoundResult res;
	int			rc;
	MemoryContext caller_cxt = CurrentMemoryContext;
	HeapTuple	tp;
	Oid			owner;
	AlertSys	sys;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tp))->proowner;
	ReleaseSysCache(tp);

	alert_sys_enter(&sys, owner);
	args[0] = PointerGetDatum(name);
	args[1] = ObjectIdGetDatum(caller);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(
		"SELECT anomaly._enqueue(d, 'anomaly test notification', jsonb_build_object("
		"  'version', 1, 'source', 'test', 'alert', 'anomaly test notification',"
		"  'status', 'firing', 'severity', 'info', 'detector', NULL, 'key', NULL,"
		"  'score', NULL, 'grade', NULL, 'explanation', NULL,"
		"  'fingerprint', anomaly._fingerprint('test', d), 'starts_at', now(),"
		"  'ends_at', NULL, 'created_at', now(), 'details', '{}'::jsonb))"
		" FROM (SELECT $1 AS d WHERE anomaly._usable_destination($2, $1, true) IS NOT NULL) x",
		2, types, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not queue the test notification");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	MemoryContextSwitchTo(caller_cxt);
	alert_deliver_round(1, id, false, &res);

	/* the test leaves nothing behind, whatever happened */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	idargs[0] = Int64GetDatum(id);
	SPI_execute_with_args("DELETE FROM anomaly.outbox WHERE id OPERATOR(pg_catalog.=) $1",
						  1, idtypes, idargs, NULL, false, 0);
	SPI_execute_with_args("DELETE FROM anomaly.dead_letters WHERE outbox_id OPERATOR(pg_catalog.=) $1",
						  1, idtypes, idargs, NULL, false, 0);
	SPI_execute_with_args("DELETE FROM anomaly.delivery_errors WHERE outbox_id OPERATOR(pg_catalog.=) $1",
						  1, idtypes, idargs, NULL, false, 0);
	SPI_finish();
	alert_sys_leave(&sys);
	MemoryContextSwitchTo(caller_cxt);

	values[0] = BoolGetDatum(res.sent == 1);
	if (res.sent == 1)
		values[1] = CStringGetTextDatum("delivered");
	else if (res.deferred == 1)
		values[1] = CStringGetTextDatum("deferred by the rate limit");
	else if (res.last_error == NULL)
		values[1] = CStringGetTextDatum("not delivered");
	else
		values[1] = CStringGetTextDatum(full ? res.last_detail : res.last_error);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
