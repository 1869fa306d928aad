#!/usr/bin/env python3
"""smtp_sink.py - an SMTP sink for the e-mail tests (Debian's python3-aiosmtpd).

    smtp_sink.py --port-file F --log L [--lifetime S]
                 [--tls-cert PEM --tls-key PEM [--smtps]] [--auth USER:PASSWORD]
                 [--slow-seconds S]

Accepts mail on 127.0.0.1 (any free port, written to --port-file) and logs
one JSON line per message: {"t", "mail_from", "rcpt_tos", "subject",
"message_id", "content_type", "body", "tls", "auth_user"}.  A recipient
whose local part is "reject" is refused with 550, "tempfail" with 451;
"slow" is accepted after --slow-seconds (2 by default).

Without a certificate no STARTTLS is offered, so a destination with
"starttls": "required" fails against it.  With --tls-cert and --tls-key,
STARTTLS is offered (or, with --smtps, the connection is TLS from the first
byte).  With --auth, mail is accepted only after AUTH with that user and
password, and AUTH only over TLS.
"""

import asyncio
import email
import email.header
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpstub  # noqa: E402


class Handler:
    def __init__(self, log, slow_seconds):
        self.log = log
        self.slow_seconds = slow_seconds

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local == "reject":
            return "550 5.1.1 no such user here"
        if local == "tempfail":
            return "451 4.3.0 try again later"
        if local == "slow":
            await asyncio.sleep(self.slow_seconds)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        tls = server.transport is not None and \
            server.transport.get_extra_info("ssl_object") is not None
        user = session.auth_data.login.decode() \
            if isinstance(session.auth_data, LoginPassword) else None
        self.log.write(json.dumps({
            "tls": tls,
            "auth_user": user,
            "t": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "message_id": msg["message-id"],
            "content_type": msg["content-type"],
            "fingerprint": msg["x-anomaly-fingerprint"],
            "body": body.get_content() if body is not None else None,
        }) + "\n")
        return "250 Message accepted for delivery"


def main():
    p = httpstub.common_args("SMTP sink: every message received, as JSON lines")
    p.add_argument("--tls-cert", default=None)
    p.add_argument("--tls-key", default=None)
    p.add_argument("--smtps", action="store_true")
    p.add_argument("--auth", default=None, help="USER:PASSWORD that AUTH must give")
    p.add_argument("--slow-seconds", type=float, default=2.0)
    args = p.parse_args()
    log = open(args.log, "a", buffering=1)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        user, _, password = args.auth.partition(":")
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login == user.encode() and auth_data.password == password.encode()
        if not ok:
            log.write(json.dumps({"t": time.time(), "auth_failed": mechanism}) + "\n")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def make_smtp(handler):
        kwargs = {"hostname": "sink.invalid"}
        if tls is not None and not args.smtps:
            kwargs["tls_context"] = tls
        if args.auth:
            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=not args.smtps)
        return SMTP(handler, **kwargs)

    async def run():
        loop = asyncio.get_running_loop()
        handler = Handler(log, args.slow_seconds)
        server = await loop.create_server(lambda: make_smtp(handler), "127.0.0.1", args.port,
                                          ssl=tls if args.smtps else None)
        await httpstub.serve_until_stopped(server, args)

    asyncio.run(run())


if __name__ == "__main__":
    main()
