#!/usr/bin/env python3
"""The test application of the compatibility matrix, in Python: a WSGI app
served by flup and uWSGI, and a CGI script run by fcgiwrap (through
wsgiref's CGIHandler). Every server's app answers the same query strings:

  op=echo           the query string, as text/plain
  op=hash           the SHA-256 (hex) of the request body
  op=big&bytes=N    N bytes of the test pattern: byte i = (i * 31 + 7) % 251
  op=cookies        two Set-Cookie headers (a=1, b=2)
  op=notfound       Status 404 Not Found
  op=stderr         "to-stderr" on the error stream, "ok" as the body
  op=barrier&group=G&n=N[&ms=T]  answers "together" once N requests of
                    group G are waiting (proves that they run at the same
                    time), "alone" with 504 after T ms (default 20000)
"""
import hashlib
import sys
import threading
from urllib.parse import parse_qs

PERIOD = bytes(((i * 31 + 7) % 251) for i in range(251))
BLOCK = PERIOD * 261  # 65511 bytes, a whole number of periods

_groups = {}
_lock = threading.Condition()


def pattern(n):
    while n > 0:
        chunk = BLOCK[:n]
        n -= len(chunk)
        yield chunk


def app(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    args = {k: v[0] for k, v in parse_qs(query).items()}
    op = args.get("op", "echo")
    text = [("Content-Type", "text/plain")]
    if op == "echo":
        start_response("200 OK", text)
        return [query.encode()]
    if op == "hash":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        digest = hashlib.sha256()
        body = environ["wsgi.input"]
        while length > 0:
            chunk = body.read(min(length, 65536))
            if not chunk:
                break
            digest.update(chunk)
            length -= len(chunk)
        start_response("200 OK", text)
        return [digest.hexdigest().encode()]
    if op == "big":
        n = int(args.get("bytes", "0"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return pattern(n)
    if op == "cookies":
        start_response("200 OK", text + [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return [b"cookies"]
    if op == "notfound":
        start_response("404 Not Found", text)
        return [b"missing"]
    if op == "stderr":
        environ["wsgi.errors"].write("to-stderr\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", text)
        return [b"ok"]
    if op == "barrier":
        group, n = args.get("group", ""), int(args.get("n", "1"))
        wait = int(args.get("ms", "20000")) / 1000
        with _lock:
            _groups[group] = _groups.get(group, 0) + 1
            _lock.notify_all()
            ok = _lock.wait_for(lambda: _groups[group] >= n, timeout=wait)
        start_response("200 OK" if ok else "504 Gateway Timeout", text)
        return [b"together" if ok else b"alone"]
    start_response("400 Bad Request", text)
    return [b"unknown op"]


application = app

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "flup":
        # flup, multiplexed, on the Unix socket sys.argv[2].
        from flup.server.fcgi import WSGIServer

        WSGIServer(app, bindAddress=sys.argv[2], multiplexed=True).run()
    else:
        from wsgiref.handlers import CGIHandler

        CGIHandler().run(app)
