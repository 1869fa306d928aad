/*
 * sns.c
 *	  Amazon SNS Publish through the Query API, signed with SigV4.
 *
 * The request is a form-encoded POST of Action=Publish with TopicArn,
 * Message, Subject, the message attributes severity, detector and score,
 * and for FIFO topics MessageGroupId and MessageDeduplicationId (the
 * notification's deterministic dedup id, the same on every retry).  The
 * endpoint is https://sns.<region>.amazonaws.com/ unless anomaly.sns_endpoint
 * says otherwise (tests point it at a local stand-in).
 */
#include "postgres.h"

#include <time.h>

#include "alert/alert.h"
#include "alert/sha256.h"
#include "alert/sigv4.h"
#include "alert/sns_parse.h"

/* Adds one form pair. */
static void
add_pair(SigV4Pair *pairs, int *n, const char *name, const char *value)
{
	pairs[*n].name = name;
	pairs[*n].value = value;
	(*n)++;
}

/*
 * Fills job with a signed Publish request for msg.  Returns false with
 * *error set when the request cannot be built (bad endpoint, signing error).
 */
bool
alert_sns_prepare(AlertHttpJob *job, const AlertSnsMessage *msg,
				  const AlertAwsCredentials *creds, char **error)
{
	SigV4Pair	pairs[24];
	int			npairs = 0;
	int			attr = 0;
	char	   *body = NULL;
	size_t		body_len = 0;
	SigV4Status st;
	const char *endpoint = alert_sns_endpoint;
	char	   *url;
	CURLU	   *cu;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *path = NULL;
	char	   *scheme = NULL;
	char	   *hosthdr;
	SigV4Pair	hdrs[2];
	SigV4Request req;
	SigV4Credentials cred;
	SigV4Result res;
	char		amz_date[SIGV4_AMZ_DATE_LEN + 1];
	time_t		now = time(NULL);
	struct tm	tm;
	char		names[3][48];
	char		types[3][48];
	char		values[3][48];
	size_t		i;

	add_pair(pairs, &npairs, "Action", "Publish");
	add_pair(pairs, &npairs, "TopicArn", msg->topic_arn);
	add_pair(pairs, &npairs, "Message", msg->message);
	if (msg->subject && msg->subject[0])
		add_pair(pairs, &npairs, "Subject", msg->subject);

#define ADD_ATTR(nm, type, val) \
	do { \
		attr++; \
		snprintf(names[attr - 1], 48, "MessageAttributes.entry.%d.Name", attr); \
		snprintf(types[attr - 1], 48, "MessageAttributes.entry.%d.Value.DataType", attr); \
		snprintf(values[attr - 1], 48, "MessageAttributes.entry.%d.Value.StringValue", attr); \
		add_pair(pairs, &npairs, names[attr - 1], nm); \
		add_pair(pairs, &npairs, types[attr - 1], type); \
		add_pair(pairs, &npairs, values[attr - 1], val); \
	} while (0)

	if (msg->severity && msg->severity[0])
		ADD_ATTR("severity", "String", msg->severity);
	if (msg->detector && msg->detector[0])
		ADD_ATTR("detector", "String", msg->detector);
	if (msg->score && msg->score[0])
		ADD_ATTR("score", "Number", msg->score);
#undef ADD_ATTR

	if (msg->fifo)
	{
		add_pair(pairs, &npairs, "MessageGroupId", msg->group_id);
		add_pair(pairs, &npairs, "MessageDeduplicationId", msg->dedup_id);
	}
	add_pair(pairs, &npairs, "Version", "2010-03-31");

	st = sigv4_form_encode(pairs, npairs, &body, &body_len);
	if (st != SIGV4_OK)
	{
		*error = psprintf("could not encode the SNS request: %s", sigv4_strerror(st));
		return false;
	}
	job->body_len = body_len;
	job->body = body;

	if (endpoint == NULL || endpoint[0] == '\0')
		url = psprintf("https://sns.%s.amazonaws.com%s/", msg->region,
					   strncmp(msg->topic_arn, "arn:aws-cn:", 11) == 0 ? ".cn" : "");
	else
		url = pstrdup(endpoint);

	cu = curl_url();
	if (cu == NULL || curl_url_set(cu, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(cu, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
		curl_url_get(cu, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(cu, CURLUPART_PATH, &path, 0) != CURLUE_OK)
	{
		if (cu)
			curl_url_cleanup(cu);
		*error = psprintf("invalid SNS endpoint URL");
		return false;
	}
	if (curl_url_get(cu, CURLUPART_PORT, &port, 0) != CURLUE_OK)
		port = NULL;
	if (port != NULL &&
		!((strcmp(scheme, "https") == 0 && strcmp(port, "443") == 0) ||
		  (strcmp(scheme, "http") == 0 && strcmp(port, "80") == 0)))
		hosthdr = psprintf("%s:%s", host, port);
	else
		hosthdr = pstrdup(host);
	job->url = url;
	job->protocols = "http,https";

	hdrs[0].name = "Host";
	hdrs[0].value = hosthdr;
	hdrs[1].name = "Content-Type";
	hdrs[1].value = "application/x-www-form-urlencoded; charset=utf-8";
	req.method = "POST";
	req.path = path;
	req.query = NULL;
	req.headers = hdrs;
	req.nheaders = 2;
	req.body = job->body;
	req.body_len = job->body_len;
	cred.access_key_id = creds->access_key_id;
	cred.secret_access_key = creds->secret_access_key;
	cred.session_token = creds->session_token;

	gmtime_r(&now, &tm);
	strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);

	st = sigv4_sign(&req, &cred, msg->region, "sns", amz_date, 0, &res);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(scheme);
	curl_url_cleanup(cu);
	if (st != SIGV4_OK)
	{
		*error = psprintf("could not sign the SNS request: %s", sigv4_strerror(st));
		return false;
	}

	job->headers = curl_slist_append(job->headers, psprintf("Host: %s", hosthdr));
	job->headers = curl_slist_append(job->headers, psprintf("Content-Type: %s", hdrs[1].value));
	for (i = 0; i < res.nextra; i++)
		job->headers = curl_slist_append(job->headers,
										 psprintf("%s: %s", res.extra_headers[i].name,
												  res.extra_headers[i].value));
	job->headers = curl_slist_append(job->headers,
									 psprintf("Authorization: %s", res.authorization));
	job->headers = curl_slist_append(job->headers, "Expect:");
	job->headers = curl_slist_append(job->headers, "Accept:");
	sigv4_result_free(&res);
	return true;
}

/* The text between <tag> and </tag> in xml, palloc'd, or NULL. */
static char *
xml_element(const char *xml, const char *tag)
{
	size_t		len;
	const char *a = sns_xml_element(xml, tag, &len);

	if (a == NULL)
		return NULL;
	return alert_printable_snippet(a, len, 300);
}

/*
 * Classifies the outcome of a Publish: ALERT_SENT, ALERT_RETRY or ALERT_DEAD
 * (with *error set for the last two).
 */
int
alert_sns_classify(const AlertHttpJob *job, char **error)
{
	const char *body = job->response ? job->response : "";
	char	   *code;
	char	   *message;

	if (job->curl_code != CURLE_OK || job->body_too_large || job->headers_too_large)
	{
		*error = alert_http_describe(job);
		return alert_http_transient_curl(job->curl_code) ? ALERT_RETRY : ALERT_DEAD;
	}
	if (job->status == 200)
	{
		if (sns_publish_succeeded(body))
			return ALERT_SENT;
		*error = psprintf("malformed SNS response (HTTP 200): %s",
						  alert_printable_snippet(body, job->response_len, 200));
		return ALERT_RETRY;
	}
	code = xml_element(body, "Code");
	message = xml_element(body, "Message");
	if (code == NULL)
	{
		*error = psprintf("unparseable SNS response (HTTP %ld): %s", job->status,
						  alert_printable_snippet(body, job->response_len, 200));
		return ALERT_RETRY;
	}
	*error = psprintf("SNS HTTP %ld %s: %s", job->status, code, message ? message : "");
	if (job->status >= 500 || job->status == 429 || sns_transient_code(code))
		return ALERT_RETRY;
	return ALERT_DEAD;
}
