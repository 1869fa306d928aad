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
 */
#include "postgres.h"

#include <time.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"

#include "alert/alert.h"

static CURLM *multi = NULL;
static bool curl_ready = false;

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
	curl_easy_setopt(e, CURLOPT_URL, job->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, job->protocols);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) alert_connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
					 job->timeout_ms > 0 ? job->timeout_ms : (long) alert_request_timeout_ms);
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
		curl_easy_setopt(e, CURLOPT_USERAGENT, "anomaly/0.1.0");
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

/* Records a finished transfer and detaches its handle. */
static void
finish(CURL *e, CURLcode code)
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
	curl_multi_remove_handle(multi, e);
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
					finish(msg->easy_handle, msg->data.result);
					active--;
				}
			}
			if (active > 0 && (next >= njobs || active >= concurrency))
				curl_multi_poll(multi, NULL, 0, 50, NULL);
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

/* A one-line description of a failed transfer (no request data in it). */
char *
alert_http_describe(const AlertHttpJob *job)
{
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
