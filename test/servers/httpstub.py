"""httpstub.py - a small asyncio HTTP/1.1 server for the local stand-ins.

Only the standard library.  Listens on 127.0.0.1 only, on the port given
(0: any free port, written to --port-file once listening), and stops by
itself after --lifetime seconds.  Keep-alive, Content-Length bodies (and
chunked request bodies), one request at a time per connection.

A handler gets a Request and returns a Reply, or one of the hostile
behaviours below (used to test that the client bounds what it reads):

  Hostile("drop")             close the connection without answering
  Hostile("garbage")          answer bytes that are not HTTP, then close
  Hostile("huge", n)          200 with an n-byte body (chunked: no length)
  Hostile("endless_headers")  a status line, then header lines without end
  Hostile("slowloris")        a status line, then a byte every second
  Hostile("slow", secs, reply) wait secs, then send reply
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time


class Request:
    def __init__(self, method, target, version, headers, raw_headers, body):
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.version = version
        self.headers = headers          # lower-case name -> value (last wins)
        self.raw_headers = raw_headers  # [(name, value)] as received
        self.body = body


class Reply:
    def __init__(self, status=200, body=b"", headers=None, reason=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.headers = headers or []
        self.reason = reason or REASONS.get(status, "Status")


class Hostile:
    def __init__(self, kind, arg=None, reply=None):
        self.kind = kind
        self.arg = arg
        self.reply = reply


REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           408: "Request Timeout", 410: "Gone", 413: "Payload Too Large",
           429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024


def reply_bytes(reply, keep_alive=True):
    head = ["HTTP/1.1 %d %s" % (reply.status, reply.reason)]
    names = {n.lower() for n, _ in reply.headers}
    head += ["%s: %s" % (n, v) for n, v in reply.headers]
    if "content-length" not in names:
        head.append("Content-Length: %d" % len(reply.body))
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + reply.body


async def read_request(reader):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        return "too_large"
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        return "bad"
    headers, raw = {}, []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        value = value.strip()
        raw.append((name, value))
        headers[name.lower()] = value
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif "content-length" in headers:
        n = int(headers["content-length"])
        if n > MAX_BODY_BYTES:
            return "too_large"
        body = await reader.readexactly(n)
    return Request(method, target, version, headers, raw, body)


async def do_hostile(h, writer, keep_alive):
    if h.kind == "drop":
        writer.transport.abort()
        return False
    if h.kind == "garbage":
        writer.write(b"\x00\x01this is not HTTP at all\r\n\r\n\xff\xfe")
        await writer.drain()
        writer.close()
        return False
    if h.kind == "huge":
        n = int(h.arg or 50 * 1024 * 1024)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: text/plain\r\n\r\n")
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < n:
                writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                await writer.drain()
                sent += len(chunk)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            return False
        return keep_alive
    if h.kind == "endless_headers":
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for i in range(2000000):
                writer.write(b"X-Endless-%d: %s\r\n" % (i, b"y" * 64))
                if i % 100 == 0:
                    await writer.drain()
        except ConnectionError:
            pass
        writer.close()
        return False
    if h.kind == "slowloris":
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for i in range(300):
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(1)
        except ConnectionError:
            pass
        writer.close()
        return False
    if h.kind == "slow":
        await asyncio.sleep(float(h.arg))
        try:
            writer.write(reply_bytes(h.reply, keep_alive))
            await writer.drain()
        except ConnectionError:
            return False
        return keep_alive
    raise ValueError("unknown hostile behaviour " + h.kind)


def make_server(handler):
    async def on_connection(reader, writer):
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                if req in ("bad", "too_large"):
                    writer.write(reply_bytes(Reply(400 if req == "bad" else 413, b"bad request"),
                                             False))
                    await writer.drain()
                    break
                keep_alive = req.headers.get("connection", "").lower() != "close"
                result = handler(req)
                if asyncio.iscoroutine(result):
                    result = await result
                if isinstance(result, Hostile):
                    if not await do_hostile(result, writer, keep_alive):
                        return
                    continue
                writer.write(reply_bytes(result, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as e:  # a bug in a handler: say so, keep serving
            print("handler error: %r" % (e,), file=sys.stderr, flush=True)
        finally:
            try:
                writer.close()
            except Exception:
                pass
    return on_connection


def common_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True, help="JSON lines of what was received")
    p.add_argument("--lifetime", type=float, default=600.0,
                   help="seconds after which the server stops by itself")
    p.add_argument("--seed", type=int, default=1)
    return p


async def serve_until_stopped(server, args, on_start=None):
    """Writes the port of a listening asyncio server to args.port_file (at
    once, through a rename), calls on_start(port), then serves until the
    lifetime ends or SIGTERM/SIGINT arrives, and closes the server.  The
    stand-ins of every protocol stop this way."""
    port = server.sockets[0].getsockname()[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, args.port_file)
    if on_start:
        on_start(port)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))
    try:
        await asyncio.wait_for(stop, timeout=args.lifetime)
    except asyncio.TimeoutError:
        pass
    server.close()


def run(handler, args, on_start=None):
    """Serves until the lifetime ends or SIGTERM/SIGINT arrives."""
    async def main():
        server = await asyncio.start_server(make_server(handler), "127.0.0.1", args.port,
                                            limit=MAX_HEADER_BYTES, backlog=512)
        await serve_until_stopped(server, args, on_start)
    asyncio.run(main())


class JsonLog:
    """Appends one JSON object per line, flushed at once."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, obj):
        self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")


def now():
    return time.time()
