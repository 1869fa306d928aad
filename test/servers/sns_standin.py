#!/usr/bin/env python3
"""sns_standin.py - a local stand-in for Amazon SNS Publish (Query API).

    sns_standin.py --port-file F --log L --access-key AKID --secret-key SECRET
                   [--session-token T] [--region eu-west-1]
                   [--faults throttle=0.1,500=0.05,503=0.05,slow=0.02,drop=0.02,
                             drop_after=0.02,malformed=0.02] [--slow-seconds 3]

Checks every request's SigV4 signature with its own implementation
(hashlib/hmac, written from AWS's documentation, independent of the
project's C signer): the Authorization header's credential scope, signed
headers (host and x-amz-date required), the date (15 minutes of skew at
most), and the signature over the canonical request rebuilt from what was
received.  Then enforces SNS's Publish rules and limits: Action, Version,
TopicArn, a non-empty Message, Message plus attributes at most 262,144 bytes,
Subject under 100 printable characters on one line, at most 10 attributes
with valid names and data types (numbers must parse), and for FIFO topics
(.fifo) a MessageGroupId and MessageDeduplicationId of 1-128 printable
characters (standard topics refuse them).  Answers with SNS's XML:
PublishResponse, or ErrorResponse with SNS's error codes.

Faults (each request draws one, from a seeded generator):
  throttle     400 Throttling "Rate exceeded"     (not published)
  500, 503     InternalError / ServiceUnavailable (not published)
  slow         published, answered after --slow-seconds
  drop         connection closed, not published
  drop_after   published, then the connection is closed (ambiguous)
  malformed    published, answered 200 with a body that is not XML (ambiguous)
A topic name picks a hostile behaviour: ...:hostile-huge, hostile-headers,
hostile-slowloris, hostile-xml (400 with invalid XML), and ...:missing-*
answers NotFound, ...:slow-* publishes and answers after --slow-topic-seconds.

Logged, one JSON line per request: {"t", "outcome": "published" or the
error code or fault, "fault", "topic", "message", "subject", "attributes",
"group", "dedup", "duplicate" (a FIFO dedup id seen before)}.
"""

import hashlib
import hmac
import json
import os
import random
import re
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpstub  # noqa: E402
from httpstub import Hostile, Reply  # noqa: E402

NS = "http://sns.amazonaws.com/doc/2010-03-31/"
ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,256}(\.fifo)?)$")


def error_xml(status, code, message, kind="Sender"):
    body = ('<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code>'
            '<Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>'
            % (NS, kind, code, message.replace("&", "&amp;").replace("<", "&lt;"), uuid.uuid4()))
    return Reply(status, body, [("Content-Type", "text/xml")])


def publish_xml(message_id, seq=None):
    extra = "<SequenceNumber>%s</SequenceNumber>" % seq if seq is not None else ""
    body = ('<PublishResponse xmlns="%s"><PublishResult><MessageId>%s</MessageId>%s'
            '</PublishResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>'
            '</PublishResponse>' % (NS, message_id, extra, uuid.uuid4()))
    return Reply(200, body, [("Content-Type", "text/xml")])


# --- SigV4, from the AWS documentation ------------------------------------------

def uri_encode(s, keep_slash=False):
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def canonical_uri(path):
    # SNS is not S3: normalise and encode each segment again (the wire path
    # is already encoded once).
    segments = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    uri = "/" + "/".join(uri_encode(s) for s in segments)
    if path.endswith("/") and segments:
        uri += "/"
    return uri


def canonical_query(query):
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((uri_encode(urllib.parse.unquote(name)), uri_encode(urllib.parse.unquote(value))))
    pairs.sort()
    return "&".join("%s=%s" % p for p in pairs)


def hmac_sha256(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def verify_sigv4(req, keys, region, session_token):
    """Returns None when the signature is right, else (status, code, message)."""
    auth = req.headers.get("authorization")
    if not auth:
        return (403, "MissingAuthenticationToken", "Request is missing Authentication Token")
    m = re.match(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                 r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$", auth)
    if not m:
        return (400, "IncompleteSignature", "Authorization header is malformed")
    key_id, date, rg, service, signed, signature = m.groups()
    if key_id not in keys:
        return (403, "InvalidClientTokenId", "The security token included in the request is invalid")
    if service != "sns" or rg != region:
        return (403, "SignatureDoesNotMatch", "Credential should be scoped to a valid region/service")
    amz_date = req.headers.get("x-amz-date", "")
    if not re.match(r"^\d{8}T\d{6}Z$", amz_date) or amz_date[:8] != date:
        return (403, "SignatureDoesNotMatch", "X-Amz-Date missing or not matching the scope")
    t = time.mktime(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")) - time.timezone
    if abs(t - time.time()) > 900:
        return (403, "RequestExpired", "Request has expired")
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        return (403, "SignatureDoesNotMatch", "host and x-amz-date must be signed")
    if names != sorted(names):
        return (403, "SignatureDoesNotMatch", "SignedHeaders not sorted")
    if session_token is not None:
        if req.headers.get("x-amz-security-token") != session_token:
            return (403, "InvalidClientTokenId", "The security token included in the request is invalid")
        if "x-amz-security-token" not in names:
            return (403, "SignatureDoesNotMatch", "x-amz-security-token must be signed")
    values = {}
    for n, v in req.raw_headers:
        ln = n.lower()
        v = re.sub(r"\s+", " ", v.strip())
        values[ln] = values[ln] + "," + v if ln in values else v
    try:
        canon_headers = "".join("%s:%s\n" % (n, values[n]) for n in names)
    except KeyError as e:
        return (403, "SignatureDoesNotMatch", "signed header %s not sent" % e)
    creq = "\n".join([req.method, canonical_uri(req.path), canonical_query(req.query),
                      canon_headers, signed, hashlib.sha256(req.body).hexdigest()])
    scope = "%s/%s/%s/aws4_request" % (date, rg, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    k = hmac_sha256(("AWS4" + keys[key_id]).encode("utf-8"), date)
    k = hmac_sha256(k, rg)
    k = hmac_sha256(k, service)
    k = hmac_sha256(k, "aws4_request")
    want = hmac.new(k, sts.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, signature):
        return (403, "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided")
    return None


# --- Publish ---------------------------------------------------------------------

def check_publish(params):
    """Returns (fields, None) or (None, (status, code, message))."""
    def bad(msg, code="InvalidParameter"):
        return None, (400, code, msg)

    if params.get("Action") != "Publish":
        return bad("Unknown Action", "InvalidAction")
    if params.get("Version") != "2010-03-31":
        return bad("Version must be 2010-03-31")
    arn = params.get("TopicArn")
    m = ARN_RE.match(arn or "")
    if not m:
        return bad("Invalid parameter: TopicArn")
    fifo = arn.endswith(".fifo")
    message = params.get("Message")
    if message is None or message == "":
        return bad("Empty message", "InvalidParameter")
    subject = params.get("Subject")
    if subject is not None:
        if subject == "" or len(subject) >= 100 or re.search(r"[\x00-\x1f\x7f]", subject):
            return bad("Invalid parameter: Subject")
        if not re.match(r"^[A-Za-z0-9\[\]!\"#$%&'()*+,\-./:;<=>?@\\^_`{|}~]", subject):
            return bad("Invalid parameter: Subject must start with a letter, number or punctuation")
    attrs = {}
    size = len(message.encode("utf-8"))
    i = 1
    while "MessageAttributes.entry.%d.Name" % i in params:
        name = params["MessageAttributes.entry.%d.Name" % i]
        dtype = params.get("MessageAttributes.entry.%d.Value.DataType" % i, "")
        value = params.get("MessageAttributes.entry.%d.Value.StringValue" % i)
        if not re.match(r"^[A-Za-z0-9_.-]{1,256}$", name) or name.startswith(("AWS.", "Amazon.")):
            return bad("Invalid attribute name %s" % name, "InvalidParameterValue")
        if dtype.split(".")[0] not in ("String", "Number", "Binary") or value is None:
            return bad("Invalid attribute %s" % name, "InvalidParameterValue")
        if dtype.startswith("Number"):
            try:
                float(value)
            except ValueError:
                return bad("Could not cast message attribute '%s' value to number." % name,
                           "InvalidParameterValue")
        attrs[name] = {"type": dtype, "value": value}
        size += len(name.encode()) + len(dtype.encode()) + len(value.encode("utf-8"))
        i += 1
    if len(attrs) > 10:
        return bad("Number of message attributes exceeds 10", "InvalidParameterValue")
    if size > 262144:
        return bad("Invalid parameter: Message too long", "InvalidParameter")
    group = params.get("MessageGroupId")
    dedup = params.get("MessageDeduplicationId")
    if fifo:
        if not group:
            return bad("Invalid parameter: The MessageGroupId parameter is required for FIFO topics")
        if not dedup:
            return bad("Invalid parameter: The topic should either have ContentBasedDeduplication "
                       "enabled or MessageDeduplicationId provided explicitly")
        for v in (group, dedup):
            if not re.match(r"^[\x21-\x7e]{1,128}$", v):
                return bad("Invalid parameter: MessageGroupId/MessageDeduplicationId")
    elif group is not None or dedup is not None:
        return bad("Invalid parameter: MessageGroupId/MessageDeduplicationId apply to FIFO topics only")
    return {"topic": arn, "topic_name": m.group(3), "fifo": fifo, "message": message,
            "subject": subject, "attributes": attrs, "group": group, "dedup": dedup}, None


def main():
    p = httpstub.common_args(__doc__)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--session-token", default=None)
    p.add_argument("--region", default="eu-west-1")
    p.add_argument("--faults", default="")
    p.add_argument("--slow-seconds", type=float, default=3.0)
    p.add_argument("--slow-topic-seconds", type=float, default=1.0)
    p.add_argument("--fault-prefix", default="",
                   help="draw faults only for topics whose name starts with this")
    p.add_argument("--imds-key", default=None,
                   help="also serve EC2 IMDSv2 credentials (this key id, the same secret)")
    p.add_argument("--container-key", default=None,
                   help="also serve ECS container credentials at /v2/credentials/<id> "
                        "(this key id, the same secret)")
    p.add_argument("--container-auth", default=None,
                   help="the Authorization header the container endpoint requires")
    args = p.parse_args()
    rng = random.Random(args.seed)
    log = httpstub.JsonLog(args.log)
    keys = {args.access_key: args.secret_key}
    if args.imds_key:
        keys[args.imds_key] = args.secret_key
    if args.container_key:
        keys[args.container_key] = args.secret_key
    faults = []
    for part in filter(None, args.faults.split(",")):
        name, _, rate = part.partition("=")
        faults.append((name.strip(), float(rate)))
    seen_dedup = {}
    seq = [0]

    def draw_fault():
        r = rng.random()
        for name, rate in faults:
            if r < rate:
                return name
            r -= rate
        return None

    imds_tokens = set()

    def imds(req, entry):
        # IMDSv2: a PUT for a session token, then GETs that carry it
        entry["outcome"] = "imds " + req.method + " " + req.path
        log.write(entry)
        if req.path == "/latest/api/token":
            if req.method != "PUT" or "x-aws-ec2-metadata-token-ttl-seconds" not in req.headers:
                return Reply(400, "bad token request")
            tok = uuid.uuid4().hex
            imds_tokens.add(tok)
            return Reply(200, tok)
        if req.headers.get("x-aws-ec2-metadata-token") not in imds_tokens:
            return Reply(401, "missing or bad token")
        if req.path == "/latest/meta-data/iam/security-credentials/":
            return Reply(200, "anomaly-role")
        if req.path == "/latest/meta-data/iam/security-credentials/anomaly-role":
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            return Reply(200, json.dumps({
                "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": args.imds_key,
                "SecretAccessKey": args.secret_key, "Token": args.session_token or "",
                "Expiration": exp}))
        return Reply(404, "not found")

    def container(req, entry):
        # ECS: one GET, authorised by a fixed header when one is configured
        entry["outcome"] = "container " + req.method + " " + req.path
        log.write(entry)
        if req.method != "GET":
            return Reply(405, "GET only")
        if args.container_auth and req.headers.get("authorization") != args.container_auth:
            return Reply(401, "missing or bad authorization")
        if req.path.endswith("/broken"):
            # not JSON: the secret is not quoted
            return Reply(200, '{"AccessKeyId": "%s", "SecretAccessKey": %s}'
                         % (args.container_key, args.secret_key))
        exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        return Reply(200, json.dumps({
            "AccessKeyId": args.container_key, "SecretAccessKey": args.secret_key,
            "Token": args.session_token or "", "Expiration": exp}))

    def handler(req):
        entry = {"t": httpstub.now()}
        if args.imds_key and req.path.startswith("/latest/"):
            return imds(req, entry)
        if args.container_key and req.path.startswith("/v2/credentials/"):
            return container(req, entry)
        if req.method != "POST" or req.path != "/":
            entry["outcome"] = "bad-request"
            log.write(entry)
            return error_xml(400, "InvalidAction", "POST / only")
        err = verify_sigv4(req, keys, args.region, args.session_token)
        if err:
            entry["outcome"] = err[1]
            log.write(entry)
            return error_xml(*err)
        # which credentials signed it (the key id is not a secret)
        m = re.search(r"Credential=([^/,\s]+)/", req.headers.get("authorization", ""))
        entry["key"] = m.group(1) if m else None
        ctype = req.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            entry["outcome"] = "bad-content-type"
            log.write(entry)
            return error_xml(400, "InvalidParameter", "bad content type")
        try:
            params = dict(urllib.parse.parse_qsl(req.body.decode("utf-8"), keep_blank_values=True,
                                                 strict_parsing=True))
        except (ValueError, UnicodeDecodeError):
            entry["outcome"] = "bad-form"
            log.write(entry)
            return error_xml(400, "MalformedQueryString", "bad form body")
        fields, err = check_publish(params)
        if err:
            entry["outcome"] = err[1]
            entry["error"] = err[2]
            log.write(entry)
            return error_xml(*err)
        entry.update({k: fields[k] for k in ("topic", "message", "subject", "attributes",
                                             "group", "dedup")})
        name = fields["topic_name"]
        if name.startswith("missing"):
            entry["outcome"] = "NotFound"
            log.write(entry)
            return error_xml(404, "NotFound", "Topic does not exist")
        if name.startswith("hostile-"):
            entry["outcome"] = name
            log.write(entry)
            if name == "hostile-huge":
                return Hostile("huge", 50 * 1024 * 1024)
            if name == "hostile-headers":
                return Hostile("endless_headers")
            if name == "hostile-slowloris":
                return Hostile("slowloris")
            return Reply(400, "<ErrorResponse><Error><Code>Oops</Code><Mess", [("Content-Type", "text/xml")])

        if name.startswith("slow-"):
            entry["outcome"] = "published"
            log.write(entry)
            return Hostile("slow", args.slow_topic_seconds, publish_xml(uuid.uuid4()))
        fault = draw_fault() if name.startswith(args.fault_prefix) else None
        entry["fault"] = fault
        if fault == "throttle":
            entry["outcome"] = "Throttling"
            log.write(entry)
            return error_xml(400, "Throttling", "Rate exceeded")
        if fault == "500":
            entry["outcome"] = "InternalError"
            log.write(entry)
            return error_xml(500, "InternalError", "internal error", "Receiver")
        if fault == "503":
            entry["outcome"] = "ServiceUnavailable"
            log.write(entry)
            return error_xml(503, "ServiceUnavailable", "service unavailable", "Receiver")
        if fault == "drop":
            entry["outcome"] = "dropped"
            log.write(entry)
            return Hostile("drop")

        # published from here on
        duplicate = False
        if fields["fifo"]:
            key = (fields["topic"], fields["dedup"])
            last = seen_dedup.get(key)
            duplicate = last is not None and time.time() - last < 300
            if not duplicate:
                seen_dedup[key] = time.time()
        entry["outcome"] = "published"
        entry["duplicate"] = duplicate
        log.write(entry)
        seq[0] += 1
        reply = publish_xml(uuid.uuid4(), "%020d" % seq[0] if fields["fifo"] else None)
        if fault == "slow":
            return Hostile("slow", args.slow_seconds, reply)
        if fault == "drop_after":
            return Hostile("drop")
        if fault == "malformed":
            return Reply(200, "<PublishResponse><Publish", [("Content-Type", "text/xml")])
        return reply

    httpstub.run(handler, args)


if __name__ == "__main__":
    main()
