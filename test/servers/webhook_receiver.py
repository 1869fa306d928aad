#!/usr/bin/env python3
"""webhook_receiver.py - a local webhook (and Slack) receiver for the tests.

    webhook_receiver.py --port-file F --log L [--fail-rate 0.5] [--secret S]

Every POST whose answer is 2xx is logged as one JSON line:
  {"t": receive time, "path": ..., "delivery": X-Anomaly-Delivery,
   "attempt": X-Anomaly-Attempt, "sig": true/false/null, "headers": {...},
   "body": the parsed JSON body (or the raw text)}

The path chooses the behaviour:
  /hook, /slack/...        200 (or, with --fail-rate F, 503 for that share of
                           requests, chosen by a seeded random generator)
  /status/NNN              always answer NNN
  /retry-after/S           429 with Retry-After: S for the first attempt of a
                           delivery, then 200
  /huge                    a 50 MB chunked body
  /endless-headers         header lines without end
  /slowloris               a status line, then one byte a second
  /drop                    close without answering
  /garbage                 bytes that are not HTTP
  /slow/S                  answer 200 after S seconds (logged as received)
  GET /_stats              counts, as JSON
"""

import hashlib
import hmac
import json
import random
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpstub  # noqa: E402
from httpstub import Hostile, Reply  # noqa: E402

# The hostile paths: the arguments of their httpstub.Hostile answer.
HOSTILE = {
    "/huge": ("huge", 50 * 1024 * 1024),
    "/endless-headers": ("endless_headers",),
    "/slowloris": ("slowloris",),
    "/drop": ("drop",),
    "/garbage": ("garbage",),
}


def main():
    p = httpstub.common_args(__doc__)
    p.add_argument("--fail-rate", type=float, default=0.0)
    p.add_argument("--secret", default=None)
    args = p.parse_args()
    rng = random.Random(args.seed)
    log = httpstub.JsonLog(args.log)
    stats = {"requests": 0, "accepted": 0, "failed": 0, "hostile": 0}
    seen_retry = set()

    def accept(req, extra=None):
        try:
            body = json.loads(req.body)
        except ValueError:
            body = req.body.decode("utf-8", "replace")
        sig = None
        if args.secret is not None:
            given = req.headers.get("x-anomaly-signature", "")
            ts = req.headers.get("x-anomaly-timestamp", "")
            want = hmac.new(args.secret.encode(), ts.encode() + b"." + req.body,
                            hashlib.sha256).hexdigest()
            sig = given == "t=%s,sha256=%s" % (ts, want)
        entry = {"t": httpstub.now(), "path": req.path,
                 "delivery": req.headers.get("x-anomaly-delivery"),
                 "attempt": req.headers.get("x-anomaly-attempt"),
                 "sig": sig,
                 "headers": {k: v for k, v in req.headers.items()
                             if k.startswith("x-") and k != "x-anomaly-signature"},
                 "body": body}
        if extra:
            entry.update(extra)
        log.write(entry)
        stats["accepted"] += 1
        return Reply(200, b"ok", [("Content-Type", "text/plain")])

    def handler(req):
        stats["requests"] += 1
        path = req.path
        if req.method == "GET" and path == "/_stats":
            return Reply(200, json.dumps(stats), [("Content-Type", "application/json")])
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            stats["failed"] += 1
            return Reply(code, "status %d from the stand-in" % code)
        if path.startswith("/retry-after/"):
            secs = path.split("/")[2]
            key = req.headers.get("x-anomaly-delivery")
            if key not in seen_retry:
                seen_retry.add(key)
                stats["failed"] += 1
                return Reply(429, "slow down", [("Retry-After", secs)])
            return accept(req)
        if path in HOSTILE:
            stats["hostile"] += 1
            return Hostile(*HOSTILE[path])
        if path.startswith("/slow/"):
            secs = float(path.split("/")[2])
            reply = accept(req, {"slow": True})
            return Hostile("slow", secs, reply)
        if args.secret is not None and path == "/signed":
            r = accept(req)
            return r
        if args.fail_rate > 0 and rng.random() < args.fail_rate:
            stats["failed"] += 1
            return Reply(503, "try again", [("Content-Type", "text/plain")])
        return accept(req)

    httpstub.run(handler, args)


if __name__ == "__main__":
    main()
