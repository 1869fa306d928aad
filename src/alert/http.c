/*
 * http.c
 *	  Runs a batch of HTTP POSTs or SMTP uploads with libcurl multi.
 *
 * At most `concurrency` transfers are in flight; each has a connect and a
 * total timeout; response bodies and headers are capped (a transfer whose
 * response exceeds the cap is aborted and reported as such); redirects are
 * not followed; only the protocols the job names are allowed.  The multi
 * handle lives as long as the process so that connections are reused from
 * one round to the next.
 *
 * Callbacks run in this process and thread; they never call palloc or
 * ereport (response buffers are malloc'd), so an error can only be raised
 * between curl calls, where the PG_CATCH below releases every handle.
 *
 * Every socket is opened by open_socket(), which sees the address libcurl
 * resolved and refuses loopback, link-local, private and other non-public
 * addresses unless anomaly.allowed_destination_hosts lists them (or the
 * URL's host name): the check is on the address actually connected to, so
 * a host name cannot route around it.  A pooled connection was checked when
 * it was opened; the pool is emptied when the allowance changes, and the
 * exempt (trusted) jobs neither reuse nor leave connections.
 *
 * The sender worker may also carry a transfer over from one round to the
 * next (deliver.c: a probe of a destination whose last attempt failed):
 * such a transfer is on a multi handle of its own, driven whenever a round
 * waits and between rounds, and opens a connection of its own that it does
 * not leave in a pool.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "alert/alert.h"

static CURLM *multi = NULL;
static CURLM *carried_multi = NULL; /* transfers that outlive a round */
static bool curl_ready = false;

/* One entry of an address list: an address and a prefix, or a host name. */
typedef struct AllowEntry
{
	int			family;			/* AF_INET, AF_INET6, or 0 for a name */
	unsigned char addr[16];
	int			bits;
	char		name[256];
} AllowEntry;

#define MAX_ALLOW 64

/* The parsed anomaly.allowed_destination_hosts, and the text it came from. */
static AllowEntry allow_list[MAX_ALLOW];
static int	allow_count = 0;
static bool allow_names = false;	/* any host name among them */
static char *allow_source = NULL;

/*
 * Addresses that are not public: loopback, link-local (instance metadata
 * included), private, shared (CGNAT), documentation, benchmarking,
 * multicast, reserved and unspecified ranges.  IPv6 forms that embed an IPv4
 * address are judged by that address (see embedded_v4).
 */
static const char *const non_public_text[] = {
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
	"169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
	"192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
	"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10",
	"fec0::/10", "ff00::/8",
	NULL
};
static AllowEntry non_public[32];
static int	non_public_count = -1;

/*
 * Parses one entry ("10.0.0.0/8", "::1", "[::1]", "hooks.example.com");
 * false when it is none of these.
 */
static bool
parse_allow_entry(const char *text, size_t len, AllowEntry *e)
{
	char		buf[300];
	char	   *slash;
	char	   *p;
	int			maxbits;

	memset(e, 0, sizeof(*e));
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	p = buf;
	if (*p == '[')
	{
		char	   *close = strchr(p, ']');

		if (close == NULL)
			return false;
		memmove(close, close + 1, strlen(close + 1) + 1);
		p++;
	}
	slash = strchr(p, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, p, e->addr) == 1)
	{
		e->family = AF_INET;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, p, e->addr) == 1)
	{
		e->family = AF_INET6;
		maxbits = 128;
	}
	else
	{
		size_t		i,
					n = strlen(p);

		if (slash != NULL || n == 0 || n > 253)
			return false;
		for (i = 0; i < n; i++)
		{
			unsigned char c = (unsigned char) p[i];

			if (!(isalnum(c) || c == '-' || c == '.' || c == '_'))
				return false;
			e->name[i] = (char) tolower(c);
		}
		e->name[n] = '\0';
		return true;
	}
	e->bits = maxbits;
	if (slash != NULL)
	{
		char	   *end;
		long		bits = strtol(slash + 1, &end, 10);

		if (end == slash + 1 || *end != '\0' || bits < 0 || bits > maxbits)
			return false;
		e->bits = (int) bits;
	}
	return true;
}

/*
 * Parses a comma-separated list into out (up to MAX_ALLOW entries); false
 * with *bad (palloc'd) naming the first entry that is not an address, a
 * CIDR range or a host name.
 */
static bool
parse_allow_list(const char *value, AllowEntry *out, int *count, char **bad)
{
	const char *p = value ? value : "";
	int			n = 0;

	while (*p != '\0')
	{
		const char *end;
		const char *a;
		const char *b;

		while (*p == ',' || isspace((unsigned char) *p))
			p++;
		if (*p == '\0')
			break;
		end = p + strcspn(p, ",");
		a = p;
		b = end;
		while (b > a && isspace((unsigned char) b[-1]))
			b--;
		if (n >= MAX_ALLOW)
		{
			if (bad)
				*bad = psprintf("more than %d entries", MAX_ALLOW);
			return false;
		}
		if (!parse_allow_entry(a, b - a, &out[n]))
		{
			if (bad)
				*bad = pnstrdup(a, b - a);
			return false;
		}
		n++;
		p = end;
	}
	*count = n;
	return true;
}

/* The check hook's test of a new anomaly.allowed_destination_hosts. */
bool
alert_allowlist_check(const char *value, char **bad)
{
	AllowEntry *tmp = palloc(sizeof(AllowEntry) * MAX_ALLOW);
	int			n;
	bool		ok = parse_allow_list(value, tmp, &n, bad);

	pfree(tmp);
	return ok;
}

/*
 * Brings the parsed allowance up to date with the setting.  When it
 * changed, the connection pool goes too: a pooled connection was checked
 * against the old allowance only.
 */
static void
refresh_allow_list(void)
{
	const char *cur = alert_allowed_destination_hosts ? alert_allowed_destination_hosts : "";

	if (non_public_count < 0)
	{
		int			i;

		for (i = 0; non_public_text[i] != NULL; i++)
			if (!parse_allow_entry(non_public_text[i], strlen(non_public_text[i]),
								   &non_public[i]))
				elog(ERROR, "bad built-in address range %s", non_public_text[i]);
		non_public_count = i;
	}
	if (allow_source != NULL && strcmp(allow_source, cur) == 0)
		return;
	if (!parse_allow_list(cur, allow_list, &allow_count, NULL))
		allow_count = 0;		/* the check hook keeps this from happening */
	allow_names = false;
	for (int i = 0; i < allow_count; i++)
		allow_names |= allow_list[i].family == 0;
	if (allow_source != NULL)
		pfree(allow_source);
	allow_source = MemoryContextStrdup(TopMemoryContext, cur);
	if (multi != NULL)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
	}
}

/* Whether addr (of family) lies in the range of entry e. */
static bool
in_range(const AllowEntry *e, int family, const unsigned char *addr)
{
	int			full;
	int			rest;

	if (e->family != family)
		return false;
	full = e->bits / 8;
	rest = e->bits % 8;
	if (memcmp(e->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((e->addr[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/*
 * The IPv4 address an IPv6 address stands for (IPv4-mapped ::ffff:0:0/96,
 * NAT64 64:ff9b::/96, 6to4 2002::/16), copied to v4; false when none.
 */
static bool
embedded_v4(const unsigned char *a6, unsigned char *v4)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

	if (memcmp(a6, mapped, 12) == 0 || memcmp(a6, nat64, 12) == 0)
	{
		memcpy(v4, a6 + 12, 4);
		return true;
	}
	if (a6[0] == 0x20 && a6[1] == 0x02)
	{
		memcpy(v4, a6 + 2, 4);
		return true;
	}
	return false;
}

/* Whether an address matches one of the n entries (addresses only). */
static bool
listed(const AllowEntry *list, int n, int family, const unsigned char *addr)
{
	int			i;

	for (i = 0; i < n; i++)
		if (list[i].family != 0 && in_range(&list[i], family, addr))
			return true;
	return false;
}

/*
 * Whether a connection to this address may be opened: public, or listed in
 * the allowance (an IPv6 form of an IPv4 address counts as that address).
 */
static bool
address_allowed(int family, const unsigned char *addr)
{
	unsigned char v4[4];
	bool		has_v4 = family == AF_INET6 && embedded_v4(addr, v4);

	if (listed(allow_list, allow_count, family, addr))
		return true;
	if (has_v4)
		return listed(allow_list, allow_count, AF_INET, v4) ||
			(!listed(non_public, non_public_count, AF_INET, v4) &&
			 !listed(non_public, non_public_count, family, addr));
	return !listed(non_public, non_public_count, family, addr);
}

/*
 * libcurl's socket opener: refuses an address that is not allowed (the
 * transfer then fails to connect, and the job says why), else opens it.
 */
static curl_socket_t
open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *sa)
{
	AlertHttpJob *job = (AlertHttpJob *) arg;
	const unsigned char *addr = NULL;

	if (sa->family == AF_INET)
		addr = (const unsigned char *) &((struct sockaddr_in *) &sa->addr)->sin_addr;
	else if (sa->family == AF_INET6)
		addr = (const unsigned char *) &((struct sockaddr_in6 *) &sa->addr)->sin6_addr;

	if (!job->trusted && !job->host_listed &&
		(addr == NULL || !address_allowed(sa->family, addr)))
	{
		job->blocked = true;
		if (addr == NULL || inet_ntop(sa->family, addr, job->blocked_addr,
									  sizeof(job->blocked_addr)) == NULL)
			strlcpy(job->blocked_addr, "an address of another family",
					sizeof(job->blocked_addr));
		return CURL_SOCKET_BAD;
	}
	return socket(sa->family, sa->socktype, sa->protocol);
}

/* Whether the host name of a URL is listed by name in the allowance. */
static bool
host_name_listed(const char *url)
{
	CURLU	   *u;
	char	   *host = NULL;
	bool		found = false;
	int			i;

	if (!allow_names || url == NULL)
		return false;
	u = curl_url();
	if (u == NULL)
		return false;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host != NULL)
	{
		size_t		len = strlen(host);

		/* a trailing dot names the same host */
		if (len > 0 && host[len - 1] == '.')
			host[len - 1] = '\0';
		for (i = 0; i < allow_count && !found; i++)
			found = allow_list[i].family == 0 && pg_strcasecmp(allow_list[i].name, host) == 0;
	}
	curl_free(host);
	curl_url_cleanup(u);
	return found;
}

/* Initialises libcurl once per process. */
static void
ensure_curl(void)
{
	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialise libcurl")));
		curl_ready = true;
	}
	if (multi == NULL)
	{
		multi = curl_multi_init();
		if (multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
	}
}

/* Appends response bytes up to the cap; aborts the transfer beyond it. */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	AlertHttpJob *job = (AlertHttpJob *) arg;
	size_t		n = size * nmemb;
	size_t		cap = (size_t) alert_max_response_bytes;
	char	   *buf;

	if (job->response_len + n > cap)
	{
		job->body_too_large = true;
		return 0;
	}
	buf = realloc(job->response, job->response_len + n + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf + job->response_len, data, n);
	job->response = buf;
	job->response_len += n;
	buf[job->response_len] = '\0';
	return n;
}

/* Counts header bytes and lines (aborting beyond the caps); reads Retry-After. */
static size_t
header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	AlertHttpJob *job = (AlertHttpJob *) arg;
	size_t		n = size * nmemb;

	job->header_bytes += n;
	job->header_count++;
	if (job->header_bytes > (size_t) alert_max_response_bytes || job->header_count > 200)
	{
		job->headers_too_large = true;
		return 0;
	}
	/* a new status line (after 100 Continue, say) starts a new header block */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		job->retry_after_ms = -1;
	if (n > 12 && pg_strncasecmp(data, "Retry-After:", 12) == 0)
	{
		char		value[64];
		size_t		len = Min(n - 12, sizeof(value) - 1);
		char	   *v = value;
		char	   *end;
		long		secs;

		memcpy(value, data + 12, len);
		value[len] = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		v[strcspn(v, "\r\n")] = '\0';
		secs = strtol(v, &end, 10);
		if (end != v && *end == '\0' && secs >= 0)
			job->retry_after_ms = (secs > 86400 ? 86400 : secs) * 1000;
		else
		{
			time_t		when = curl_getdate(v, NULL);

			if (when > 0)
			{
				long		d = (long) (when - time(NULL));

				job->retry_after_ms = (d < 0 ? 0 : (d > 86400 ? 86400 : d)) * 1000;
			}
		}
	}
	return n;
}

/* Feeds the SMTP upload. */
static size_t
read_cb(char *buffer, size_t size, size_t nitems, void *arg)
{
	AlertHttpJob *job = (AlertHttpJob *) arg;
	size_t		room = size * nitems;
	size_t		left = job->body_len - job->upload_off;
	size_t		n = Min(room, left);

	memcpy(buffer, job->body + job->upload_off, n);
	job->upload_off += n;
	return n;
}

/* Creates the easy handle of a job. */
static CURL *
make_easy(AlertHttpJob *job)
{
	CURL	   *e = curl_easy_init();

	if (e == NULL)
		return NULL;
	job->retry_after_ms = -1;
	job->errbuf[0] = '\0';
	job->blocked = false;
	job->blocked_addr[0] = '\0';
	job->host_listed = !job->trusted && host_name_listed(job->url);
	curl_easy_setopt(e, CURLOPT_URL, job->url);
	/* no proxy from the environment: it would be the address checked */
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, job);
	if (job->trusted)
	{
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	}
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, job->protocols);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) alert_connect_timeout_ms);
	/*
	 * A destination's timeout_ms may shorten the superuser's total timeout,
	 * never lengthen it: a round waits for its slowest transfer, and the
	 * sender's rounds carry every admin's notifications.
	 */
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
					 job->timeout_ms > 0 ?
					 Min((long) job->timeout_ms, (long) alert_request_timeout_ms) :
					 (long) alert_request_timeout_ms);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, job->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, job);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, job);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) alert_max_response_bytes);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	if (alert_tls_ca_file != NULL && alert_tls_ca_file[0] != '\0')
		curl_easy_setopt(e, CURLOPT_CAINFO, alert_tls_ca_file);
	if (job->smtp)
	{
		curl_easy_setopt(e, CURLOPT_MAIL_FROM, job->mail_from);
		curl_easy_setopt(e, CURLOPT_MAIL_RCPT, job->rcpt);
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(e, CURLOPT_READDATA, job);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t) job->body_len);
		curl_easy_setopt(e, CURLOPT_USE_SSL, (long) job->use_ssl);
		if (job->username)
			curl_easy_setopt(e, CURLOPT_USERNAME, job->username);
		if (job->password)
			curl_easy_setopt(e, CURLOPT_PASSWORD, job->password);
	}
	else
	{
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, job->headers);
		curl_easy_setopt(e, CURLOPT_USERAGENT, "anomaly/" ANOMALY_VERSION);
		if (job->get)
			curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
		else
		{
			if (job->put)
				curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
			curl_easy_setopt(e, CURLOPT_POST, 1L);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, job->body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) job->body_len);
		}
	}
	return e;
}

/* Records a finished transfer and detaches its handle from m. */
static void
finish(CURLM *m, CURL *e, CURLcode code)
{
	AlertHttpJob *job = NULL;
	long		status = 0;
	curl_off_t	t = 0;

	curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **) &job);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &t);
	job->curl_code = code;
	job->status = status;
	job->elapsed_ms = (long) (t / 1000);
	job->done = true;
	curl_multi_remove_handle(m, e);
	curl_easy_cleanup(e);
	job->easy = NULL;
}

/* Detaches and frees every unfinished handle (after an error). */
static void
abandon(AlertHttpJob **jobs, int njobs)
{
	int			i;

	for (i = 0; i < njobs; i++)
	{
		if (jobs[i]->easy != NULL)
		{
			curl_multi_remove_handle(multi, jobs[i]->easy);
			curl_easy_cleanup(jobs[i]->easy);
			jobs[i]->easy = NULL;
		}
	}
}

/*
 * Runs the jobs, at most concurrency at once, until all are done.  Each
 * job's outcome fields are set; a job whose handle could not be created is
 * done with CURLE_OUT_OF_MEMORY.  Interrupts are checked while waiting.
 */
void
alert_http_run(AlertHttpJob **jobs, int njobs, int concurrency)
{
	volatile int next = 0;
	volatile int active = 0;

	refresh_allow_list();
	ensure_curl();
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(concurrency * 2, 8));

	PG_TRY();
	{
		while (next < njobs || active > 0)
		{
			int			running = 0;
			CURLMsg    *msg;
			int			left;

			while (active < concurrency && next < njobs)
			{
				AlertHttpJob *job = jobs[next++];
				CURL	   *e = make_easy(job);

				if (e == NULL || curl_multi_add_handle(multi, e) != CURLM_OK)
				{
					if (e)
						curl_easy_cleanup(e);
					job->curl_code = CURLE_OUT_OF_MEMORY;
					job->done = true;
					continue;
				}
				job->easy = e;
				active++;
			}

			curl_multi_perform(multi, &running);
			while ((msg = curl_multi_info_read(multi, &left)) != NULL)
			{
				if (msg->msg == CURLMSG_DONE)
				{
					finish(multi, msg->easy_handle, msg->data.result);
					active--;
				}
			}
			if (active > 0 && (next >= njobs || active >= concurrency))
				curl_multi_poll(multi, NULL, 0, 50, NULL);
			/* carried transfers go on meanwhile; their ends are read later */
			if (carried_multi != NULL)
			{
				int			carried_running;

				curl_multi_perform(carried_multi, &carried_running);
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		abandon(jobs, njobs);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Starts a job that is to outlive the round (see the top of the file); the
 * job and everything it points to must live until alert_http_carried_done
 * returns it.  False when its handle could not be made: run it in a round.
 */
bool
alert_http_carry(AlertHttpJob *job)
{
	CURL	   *e;

	refresh_allow_list();
	ensure_curl();
	if (carried_multi == NULL)
	{
		carried_multi = curl_multi_init();
		if (carried_multi == NULL)
			return false;
	}
	e = make_easy(job);
	if (e == NULL)
		return false;
	curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	if (curl_multi_add_handle(carried_multi, e) != CURLM_OK)
	{
		curl_easy_cleanup(e);
		return false;
	}
	job->easy = e;
	return true;
}

/*
 * Drives the carried transfers without waiting and returns one that has
 * finished (its outcome fields set), or NULL when none has.
 */
AlertHttpJob *
alert_http_carried_done(void)
{
	int			running = 0;
	int			left;
	CURLMsg    *msg;

	if (carried_multi == NULL)
		return NULL;
	curl_multi_perform(carried_multi, &running);
	while ((msg = curl_multi_info_read(carried_multi, &left)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE)
		{
			AlertHttpJob *job = NULL;

			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &job);
			finish(carried_multi, msg->easy_handle, msg->data.result);
			return job;
		}
	}
	return NULL;
}

/*
 * Frees a header or recipient list, each line overwritten first: a line may
 * hold a session token (SNS, the instance metadata service).
 */
void
alert_free_headers(struct curl_slist *list)
{
	for (struct curl_slist *l = list; l != NULL; l = l->next)
		if (l->data != NULL)
			explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

/* Frees the response buffer of a job. */
void
alert_http_job_release(AlertHttpJob *job)
{
	if (job->response != NULL)
		free(job->response);
	job->response = NULL;
	job->response_len = 0;
}

/* Whether a transport error may succeed when tried again. */
bool
alert_http_transient_curl(CURLcode code)
{
	switch (code)
	{
		case CURLE_URL_MALFORMAT:
		case CURLE_NOT_BUILT_IN:
		case CURLE_LOGIN_DENIED:
		case CURLE_BAD_FUNCTION_ARGUMENT:
			return false;
		default:
			return true;
	}
}

/*
 * A printable, bounded copy of untrusted text (a response body): control
 * and non-ASCII bytes become '?', at most max bytes, "..." when cut.
 */
char *
alert_printable_snippet(const char *s, size_t len, size_t max)
{
	StringInfoData buf;
	size_t		i;

	initStringInfo(&buf);
	if (s == NULL)
		return buf.data;
	for (i = 0; i < len && i < max; i++)
	{
		unsigned char c = (unsigned char) s[i];

		appendStringInfoChar(&buf, (c >= 0x20 && c < 0x7f) ? (char) c : (c == '\n' || c == '\r' || c == '\t') ? ' ' : '?');
	}
	if (len > max)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/* Whether the transfer failed because the allowance refused its address. */
bool
alert_http_refused(const AlertHttpJob *job)
{
	return job->blocked && job->curl_code != CURLE_OK;
}

/*
 * A one-line description of a failed transfer (no request data in it), with
 * the response body and the connection's details: for superusers only.
 */
char *
alert_http_describe(const AlertHttpJob *job)
{
	if (alert_http_refused(job))
		return psprintf("connection to %s refused: not a public address, and not in anomaly.allowed_destination_hosts",
						job->blocked_addr);
	if (job->body_too_large || job->curl_code == CURLE_FILESIZE_EXCEEDED)
		return psprintf("response body larger than %d bytes", alert_max_response_bytes);
	if (job->headers_too_large)
		return psprintf("response headers larger than %d bytes or 200 lines",
						alert_max_response_bytes);
	if (job->curl_code == CURLE_OPERATION_TIMEDOUT)
		return psprintf("timed out after %ld ms%s", job->elapsed_ms,
						job->status > 0 ? " (response incomplete)" : "");
	if (job->curl_code != CURLE_OK)
	{
		char	   *detail = alert_printable_snippet(job->errbuf, strlen(job->errbuf), 200);

		return psprintf("%s%s%s", curl_easy_strerror(job->curl_code),
						detail[0] ? ": " : "", detail);
	}
	return psprintf("%s %ld: %s", job->smtp ? "SMTP" : "HTTP", job->status,
					alert_printable_snippet(job->response, job->response_len, 200));
}

/*
 * The class of a failed transfer, for roles other than superusers: the
 * HTTP status or SMTP reply code, or libcurl's generic name of the error;
 * never a response body, an address or libcurl's detailed message.
 */
char *
alert_http_class(const AlertHttpJob *job)
{
	if (alert_http_refused(job))
		return pstrdup("destination address not allowed (anomaly.allowed_destination_hosts)");
	if (job->body_too_large || job->curl_code == CURLE_FILESIZE_EXCEEDED)
		return psprintf("response body larger than %d bytes", alert_max_response_bytes);
	if (job->headers_too_large)
		return psprintf("response headers larger than %d bytes or 200 lines",
						alert_max_response_bytes);
	if (job->curl_code != CURLE_OK && job->smtp && job->status > 0)
		return psprintf("SMTP %ld: %s", job->status, curl_easy_strerror(job->curl_code));
	if (job->curl_code != CURLE_OK)
		return pstrdup(curl_easy_strerror(job->curl_code));
	return psprintf("%s %ld", job->smtp ? "SMTP" : "HTTP", job->status);
}
