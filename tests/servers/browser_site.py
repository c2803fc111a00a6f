#!/usr/bin/python3
"""browser_site.py: a small web shop for the browser users' tests, benchmarks and example.

Serves the static pages in browser_site/ (an HTML page with a style sheet, a script, an image,
a search form, a counter button and a list filled from /api/items) plus:

  GET /api/items        a JSON list of items (what the page's script fetches)
  GET /api/slow?ms=N    answers after N milliseconds (at most 10000)

Prints "listening on http://127.0.0.1:PORT" and serves until killed. Python's standard
library only. Usage: browser_site.py [--port PORT] (default 0: a free port).
"""
import json
import os
import sys
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser_site")
ITEMS = [{"id": i, "name": f"Item {i}", "price": round(2.5 * i, 2)} for i in range(1, 11)]


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def log_message(self, *args):
        pass

    def end_headers(self):
        # every page is measured as it is: nothing is served from the browser's cache
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/api/items":
            return self.json(ITEMS)
        if u.path == "/api/slow":
            q = urllib.parse.parse_qs(u.query)
            ms = min(max(int(q.get("ms", ["200"])[0]), 0), 10000)
            time.sleep(ms / 1000)
            return self.json({"slept_ms": ms})
        return super().do_GET()


def main():
    port = 0
    if len(sys.argv) == 3 and sys.argv[1] == "--port":
        port = int(sys.argv[2])
    elif len(sys.argv) != 1:
        sys.exit("usage: browser_site.py [--port PORT]")
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
