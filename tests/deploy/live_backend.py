#!/usr/bin/python3
"""A small upstream for the live deploy tests (standard library only).

  live_backend.py PORT_FILE [SLOW_SECONDS]

Listens on 127.0.0.1 on a free port (port 0, so no race), writes the port to PORT_FILE once it
accepts, and answers every GET/HEAD/POST with 200 and a small HTML page, except:
  /missing...  404 (an upstream 4xx that crawlgate relays)
  /slow...     answers only after SLOW_SECONDS (default 3): longer than the tests'
               timeouts.upstream_response, so crawlgate counts an upstream timeout
Exits on SIGTERM/SIGINT, or by itself after 10 minutes (a bound in case nobody stops it).
"""
import http.server
import os
import signal
import socketserver
import sys
import threading
import time

LIFETIME_SECONDS = 600


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    slow_seconds = 3.0

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, with_body):
        if self.path.startswith("/slow"):
            time.sleep(self.slow_seconds)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        if self.path.startswith("/missing"):
            status, body = 404, b"<html><body>not here</body></html>\n"
        else:
            status, body = 200, b"<html><body>" + b"page " * 200 + b"</body></html>\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer(True)

    def do_POST(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # crawlgate closing a connection it gave up on (/slow) is expected: no traceback.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    Handler.slow_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    server = Server(("127.0.0.1", 0), Handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    timer = threading.Timer(LIFETIME_SECONDS, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, sys.argv[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
