/*
 * credentials.c
 *	  Secrets for alert destinations.
 *
 * Named credentials (webhook signing secrets, SMTP passwords, secret URLs)
 * come from the superuser-only setting anomaly.credentials
 * ("name=value; name2=value2"), else from the environment variable
 * ANOMALY_CREDENTIAL_<NAME> (upper case) of the server.
 *
 * AWS credentials are looked up as the AWS SDKs do: the anomaly.aws_*
 * settings, the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN environment variables, the shared credentials file, the
 * ECS container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI)
 * and the EC2 instance metadata service (IMDSv2).  Temporary credentials of
 * the last two are cached and refreshed five minutes before they expire.
 *
 * A named credential is used only for a URL that a superuser bound it to
 * (anomaly.credential_bindings, "name=prefix [prefix...]; name2=prefix"):
 * the URL's scheme, host and port must equal those of one of its prefixes,
 * and its path must start with the prefix's path.  A credential with no
 * binding is never used, so an admin cannot send a secret where they like.
 *
 * No secret is ever put in an error message or a log line.
 */
#include "postgres.h"

#include <ctype.h>
#include <time.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "alert/alert.h"
#include "alert/cred_document.h"
#include "alert/sha256.h"
#include "alert/wipe.h"
#include "compat.h"

/* Returns a palloc'd copy of s[0..len) with surrounding blanks removed. */
static char *
trimmed_copy(const char *s, size_t len)
{
	while (len > 0 && isspace((unsigned char) *s))
	{
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char) s[len - 1]))
		len--;
	return pnstrdup(s, len);
}

/*
 * Looks up a named credential; returns a palloc'd copy of its value, or NULL
 * when it is not defined.
 */
char *
alert_credential_lookup(const char *name)
{
	const char *p = alert_credentials;
	size_t		namelen;
	char		envname[128];
	const char *env;
	int			i;

	if (name == NULL || name[0] == '\0')
		return NULL;
	namelen = strlen(name);

	while (p != NULL && *p != '\0')
	{
		const char *end = p + strcspn(p, ";\n");
		const char *eq = memchr(p, '=', end - p);

		if (eq != NULL)
		{
			char	   *key = trimmed_copy(p, eq - p);
			bool		match = strlen(key) == namelen && strcmp(key, name) == 0;

			pfree(key);
			if (match)
				return trimmed_copy(eq + 1, end - eq - 1);
		}
		p = (*end == '\0') ? end : end + 1;
	}

	if (namelen > sizeof(envname) - 32)
		return NULL;
	snprintf(envname, sizeof(envname), "ANOMALY_CREDENTIAL_");
	for (i = 0; name[i] != '\0'; i++)
	{
		char		c = name[i];

		envname[19 + i] = isalnum((unsigned char) c) ? toupper((unsigned char) c) : '_';
	}
	envname[19 + i] = '\0';
	env = getenv(envname);
	if (env != NULL && env[0] != '\0')
		return pstrdup(env);
	return NULL;
}

/* Frees one malloc'd secret after overwriting it. */
static void
free_secret(char **p)
{
	if (*p != NULL)
	{
		explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

/* Clears credentials filled by alert_aws_credentials(). */
void
alert_aws_credentials_clear(AlertAwsCredentials *creds)
{
	free_secret(&creds->access_key_id);
	free_secret(&creds->secret_access_key);
	free_secret(&creds->session_token);
	creds->source = NULL;
}

/* malloc'd copy, or NULL for NULL or "". */
static char *
secret_dup(const char *s)
{
	char	   *r;

	if (s == NULL || s[0] == '\0')
		return NULL;
	r = strdup(s);
	if (r == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return r;
}

/* Fills out from key id, secret and token; true when both are present. */
static bool
take(AlertAwsCredentials *out, const char *id, const char *secret,
	 const char *token, const char *source)
{
	if (id == NULL || id[0] == '\0' || secret == NULL || secret[0] == '\0')
		return false;
	out->access_key_id = secret_dup(id);
	out->secret_access_key = secret_dup(secret);
	out->session_token = secret_dup(token);
	out->source = source;
	return true;
}

/*
 * Reads a profile of an AWS shared credentials file (INI).  Returns true
 * when it held a key id and a secret.
 */
static bool
from_shared_file(AlertAwsCredentials *out)
{
	const char *path = alert_aws_shared_credentials_file;
	const char *profile = alert_aws_profile;
	char		pathbuf[MAXPGPATH];
	char		line[4096];
	FILE	   *f;
	bool		in_profile = false;
	char	   *id = NULL,
			   *secret = NULL,
			   *token = NULL;
	bool		ok;

	if (path == NULL || path[0] == '\0')
		path = getenv("AWS_SHARED_CREDENTIALS_FILE");
	if (path == NULL || path[0] == '\0')
	{
		const char *home = getenv("HOME");

		if (home == NULL || home[0] == '\0')
			return false;
		snprintf(pathbuf, sizeof(pathbuf), "%s/.aws/credentials", home);
		path = pathbuf;
	}
	if (profile == NULL || profile[0] == '\0')
		profile = getenv("AWS_PROFILE");
	if (profile == NULL || profile[0] == '\0')
		profile = "default";

	f = fopen(path, "r");
	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *s = line;
		char	   *eq;
		char	   *key,
				   *val;

		while (isspace((unsigned char) *s))
			s++;
		if (*s == '#' || *s == ';' || *s == '\0')
			continue;
		if (*s == '[')
		{
			char	   *end = strchr(s, ']');
			char	   *name;

			if (end == NULL)
				continue;
			name = trimmed_copy(s + 1, end - s - 1);
			in_profile = strcmp(name, profile) == 0;
			pfree(name);
			continue;
		}
		if (!in_profile || (eq = strchr(s, '=')) == NULL)
			continue;
		key = trimmed_copy(s, eq - s);
		val = trimmed_copy(eq + 1, strlen(eq + 1));
		if (strcmp(key, "aws_access_key_id") == 0)
		{
			if (id)
				pfree(id);
			id = val;
		}
		else if (strcmp(key, "aws_secret_access_key") == 0)
		{
			if (secret)
				pfree(secret);
			secret = val;
		}
		else if (strcmp(key, "aws_session_token") == 0)
		{
			if (token)
				pfree(token);
			token = val;
		}
		else
			alert_free_wiped(val);
		pfree(key);
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	ok = take(out, id, secret, token, "shared credentials file");
	alert_free_wiped(secret);
	alert_free_wiped(token);
	return ok;
}

/* Temporary credentials from ECS or IMDS, kept until shortly before expiry. */
static AlertAwsCredentials cached;
static time_t cached_expiry = 0;

/* One small HTTP request for credentials; returns the body or NULL. */
static char *
fetch_small(const char *url, struct curl_slist *headers, bool put, char *error,
			size_t errlen)
{
	AlertHttpJob job;
	AlertHttpJob *jobs[1];
	char	   *result = NULL;

	memset(&job, 0, sizeof(job));
	job.url = url;
	job.protocols = "http,https";
	job.headers = headers;
	job.put = put;
	job.get = !put;
	job.body = "";
	job.body_len = 0;
	job.timeout_ms = 2000;
	/* a URL of the superuser's settings or the server's environment */
	job.trusted = true;
	jobs[0] = &job;
	alert_http_run(jobs, 1, 1);
	if (job.curl_code == CURLE_OK && job.status == 200 && job.response != NULL)
		result = pstrdup(job.response);
	else
	{
		char	   *d = alert_http_describe(&job);

		snprintf(error, errlen, "%s", d);
		pfree(d);
	}
	if (job.response)
		explicit_bzero(job.response, job.response_len);
	alert_http_job_release(&job);
	return result;
}

/*
 * Takes a credential document (JSON) of ECS or IMDS, fetched from "from",
 * into the cache; otherwise error says why (never a part of the document).
 */
static bool
take_document(char *doc, const char *source, const char *from,
			  char *error, size_t errlen)
{
	CredDocument fields;
	char		why[128];
	bool		ok = false;

	alert_aws_credentials_clear(&cached);
	cached_expiry = 0;
	if (!cred_document_read(doc, &fields, why, sizeof(why)))
		snprintf(error, errlen, "%s returned an unusable credential document: %s", from, why);
	else
	{
		ok = take(&cached, fields.access_key_id, fields.secret_access_key,
				  fields.token, source);
		if (!ok)
			snprintf(error, errlen, "%s returned no credentials", from);
		cached_expiry = ok ? cred_parse_expiration(fields.expiration) : 0;
		if (ok && cached_expiry == 0)
			cached_expiry = time(NULL) + 600;
		cred_document_clear(&fields);
	}
	alert_free_wiped(doc);
	return ok;
}

/* ECS container credentials; true when found. */
static bool
from_container(char *error, size_t errlen)
{
	const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *auth = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	char	   *url;
	struct curl_slist *headers = NULL;
	char	   *doc;

	if (rel != NULL && rel[0] != '\0')
		url = psprintf("%s%s", alert_aws_container_endpoint, rel);
	else if (full != NULL && full[0] != '\0')
		url = pstrdup(full);
	else
		return false;
	if (auth != NULL && auth[0] != '\0')
	{
		char	   *h = psprintf("Authorization: %s", auth);

		headers = curl_slist_append(headers, h);
		alert_free_wiped(h);
	}
	doc = fetch_small(url, headers, false, error, errlen);
	alert_free_headers(headers);
	if (doc == NULL)
		return false;
	return take_document(doc, "container endpoint", "the container credentials endpoint",
						 error, errlen);
}

/* EC2 instance metadata (IMDSv2); true when found. */
static bool
from_imds(char *error, size_t errlen)
{
	const char *base = alert_aws_imds_endpoint;
	const char *env_base = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	const char *disabled = getenv("AWS_EC2_METADATA_DISABLED");
	struct curl_slist *headers = NULL;
	char	   *token;
	char	   *role;
	char	   *doc;
	char	   *h;

	if (disabled != NULL && pg_strcasecmp(disabled, "true") == 0)
		return false;
	if (env_base != NULL && env_base[0] != '\0')
		base = env_base;
	if (base == NULL || base[0] == '\0')
		return false;

	headers = curl_slist_append(NULL, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
	token = fetch_small(psprintf("%s/latest/api/token", base), headers, true, error, errlen);
	alert_free_headers(headers);
	if (token == NULL)
		return false;
	h = psprintf("X-aws-ec2-metadata-token: %s", token);
	headers = curl_slist_append(NULL, h);
	explicit_bzero(h, strlen(h));
	explicit_bzero(token, strlen(token));
	role = fetch_small(psprintf("%s/latest/meta-data/iam/security-credentials/", base),
					   headers, false, error, errlen);
	if (role == NULL)
	{
		alert_free_headers(headers);
		return false;
	}
	role[strcspn(role, "\r\n")] = '\0';
	doc = fetch_small(psprintf("%s/latest/meta-data/iam/security-credentials/%s", base, role),
					  headers, false, error, errlen);
	alert_free_headers(headers);
	if (doc == NULL)
		return false;
	return take_document(doc, "instance metadata", "the instance metadata service",
						 error, errlen);
}

/*
 * Finds AWS credentials.  On success out holds malloc'd copies (release with
 * alert_aws_credentials_clear()); otherwise error says why (never a secret).
 */
bool
alert_aws_credentials(AlertAwsCredentials *out, char *error, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	snprintf(error, errlen, "no AWS credentials found");

	if (take(out, alert_aws_access_key_id, alert_aws_secret_access_key,
			 alert_aws_session_token, "settings"))
		return true;
	if (take(out, getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"),
			 getenv("AWS_SESSION_TOKEN"), "environment"))
		return true;
	if (from_shared_file(out))
		return true;

	if (cached.access_key_id == NULL || time(NULL) > cached_expiry - 300)
	{
		if (!from_container(error, errlen) && !from_imds(error, errlen))
		{
			alert_aws_credentials_clear(&cached);
			return false;
		}
	}
	return take(out, cached.access_key_id, cached.secret_access_key,
				cached.session_token, cached.source);
}

/* A URL cut into the parts a binding compares. */
typedef struct UrlParts
{
	char	   *scheme;
	char	   *host;
	char	   *port;
	char	   *path;
} UrlParts;

/* One part of a parsed URL, palloc'd ("" when absent). */
static char *
url_part(CURLU *u, CURLUPart part, unsigned int flags)
{
	char	   *v = NULL;
	char	   *r;

	if (curl_url_get(u, part, &v, flags) != CURLUE_OK || v == NULL)
		return pstrdup("");
	r = pstrdup(v);
	curl_free(v);
	return r;
}

/* Parses a URL with libcurl's parser (as the transfer will); false if bad. */
static bool
url_parts(const char *url, UrlParts *out)
{
	CURLU	   *u = curl_url();
	bool		ok;

	if (u == NULL)
		return false;
	ok = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK;
	if (ok)
	{
		out->scheme = url_part(u, CURLUPART_SCHEME, 0);
		out->host = url_part(u, CURLUPART_HOST, 0);
		out->port = url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
		out->path = url_part(u, CURLUPART_PATH, 0);
		ok = out->host[0] != '\0';
	}
	curl_url_cleanup(u);
	return ok;
}

/* Whether a bound prefix covers a URL (both parsed the same way). */
static bool
prefix_covers(const char *prefix, size_t prefix_len, const UrlParts *target)
{
	char	   *copy = pnstrdup(prefix, prefix_len);
	UrlParts	p;
	bool		ok;

	ok = url_parts(copy, &p) &&
		pg_strcasecmp(p.scheme, target->scheme) == 0 &&
		pg_strcasecmp(p.host, target->host) == 0 &&
		strcmp(p.port, target->port) == 0 &&
		strncmp(target->path, p.path, strlen(p.path)) == 0;
	pfree(copy);
	return ok;
}

/*
 * Walks the bindings of name: *any tells whether it has one; returns whether
 * one of its prefixes covers url (when url is not NULL).
 */
static bool
binding_covers(const char *name, const char *url, bool *any)
{
	const char *p = alert_credential_bindings;
	UrlParts	target;
	bool		have_target = url != NULL && url_parts(url, &target);

	*any = false;
	while (p != NULL && *p != '\0')
	{
		const char *end = p + strcspn(p, ";\n");
		const char *eq = memchr(p, '=', end - p);

		if (eq != NULL)
		{
			char	   *key = trimmed_copy(p, eq - p);
			bool		match = strcmp(key, name) == 0;

			pfree(key);
			if (match)
			{
				const char *q = eq + 1;

				while (q < end)
				{
					size_t		len;

					while (q < end && isspace((unsigned char) *q))
						q++;
					len = 0;
					while (q + len < end && !isspace((unsigned char) q[len]))
						len++;
					if (len > 0)
					{
						*any = true;
						if (have_target && prefix_covers(q, len, &target))
							return true;
					}
					q += len;
				}
			}
		}
		p = (*end == '\0') ? end : end + 1;
	}
	return false;
}

/* Whether a superuser bound credential name to a prefix of url. */
bool
alert_credential_bound(const char *name, const char *url)
{
	bool		any;

	return name != NULL && url != NULL && binding_covers(name, url, &any);
}

/*
 * The value of credential name for a connection to url (palloc'd), when
 * bound to it; with url NULL the credential is itself the URL, and must be
 * bound to itself.  *status says why there is none.
 */
char *
alert_credential_for(const char *name, const char *url, int *status)
{
	char	   *value;

	if (url != NULL && !alert_credential_bound(name, url))
	{
		*status = ALERT_CRED_UNBOUND;
		return NULL;
	}
	value = alert_credential_lookup(name);
	if (value == NULL)
	{
		*status = ALERT_CRED_UNDEFINED;
		return NULL;
	}
	if (url == NULL && !alert_credential_bound(name, value))
	{
		alert_free_wiped(value);
		*status = ALERT_CRED_UNBOUND;
		return NULL;
	}
	*status = ALERT_CRED_OK;
	return value;
}

PG_FUNCTION_INFO_V1(anomaly_alert_credential_bound);

/*
 * SQL: anomaly._credential_bound(name, url): whether the credential may go
 * to url; with url NULL (a URL credential), whether it has a binding and,
 * when it is defined, its value is bound.  Owner only: it reads settings
 * that only superusers may read.
 */
Datum
anomaly_alert_credential_bound(PG_FUNCTION_ARGS)
{
	char	   *name;
	bool		any;
	bool		ok;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
		ok = binding_covers(name, text_to_cstring(PG_GETARG_TEXT_PP(1)), &any);
	else
	{
		char	   *value = alert_credential_lookup(name);

		if (value == NULL)
			(void) binding_covers(name, NULL, &ok);
		else
		{
			ok = binding_covers(name, value, &any);
			alert_free_wiped(value);
		}
	}
	PG_RETURN_BOOL(ok);
}
