#!/usr/bin/env python3
"""smtp_sink.py - an SMTP sink for the e-mail tests (Debian's python3-aiosmtpd).

    smtp_sink.py --port-file F --log L [--lifetime S]

Accepts mail on 127.0.0.1 (any free port, written to --port-file) and logs
one JSON line per message: {"t", "mail_from", "rcpt_tos", "subject",
"message_id", "content_type", "body"}.  A recipient whose local part is
"reject" is refused with 550, "tempfail" with 451.  No STARTTLS is offered,
so a destination with "starttls": "required" fails against it.
"""

import argparse
import asyncio
import email
import email.header
import email.policy
import json
import os
import signal
import time

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, log):
        self.log = log

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local == "reject":
            return "550 5.1.1 no such user here"
        if local == "tempfail":
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        self.log.write(json.dumps({
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
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--lifetime", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    log = open(args.log, "a", buffering=1)

    async def run():
        loop = asyncio.get_running_loop()
        handler = Handler(log)
        server = await loop.create_server(lambda: SMTP(handler, hostname="sink.invalid"),
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(args.port_file + ".tmp", args.port_file)
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        try:
            await asyncio.wait_for(stop, timeout=args.lifetime)
        except asyncio.TimeoutError:
            pass
        server.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
