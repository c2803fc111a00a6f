#!/usr/bin/python3
"""httpbin.py: a small HTTP test server for the client's features, in Python's standard library.

Prints "listening on http://127.0.0.1:PORT" first, then serves until killed.

  /anything[/...]          echoes the request as JSON: method, path, query, headers, body,
                           json, form, files (multipart), cookies
  /status/N                answers with status N
  /redirect/N              redirects N times (302) to /get, relative Location
  /redirect-to?url=&status= redirects to url with status (default 302)
  /cookies/set?k=v         sets cookies and redirects to /cookies
  /cookies                 the cookies received, as JSON
  /basic-auth/USER/PASS    200 with the right Authorization header, 401 without
  /gzip, /deflate          a JSON body, compressed
  /chunked/N               N chunks of a line each
  /bytes/N                 N bytes
  /delay/S                 answers after S seconds
  /get                     as /anything, for GET
  /headers                 the request headers as JSON
"""
import base64
import email.parser
import email.policy
import gzip
import json
import socketserver
import sys
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def cookies(self):
        out = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            if "=" in part:
                k, v = part.strip().split("=", 1)
                out[k] = v
        return out

    def echo(self):
        u = urllib.parse.urlsplit(self.path)
        raw = self.body()
        info = {
            "method": self.command,
            "path": u.path,
            "query": urllib.parse.parse_qs(u.query),
            "headers": {k: v for k, v in self.headers.items()},
            "body": raw.decode("latin-1"),
            "cookies": self.cookies(),
            "remote_addr": self.client_address[0],
        }
        ctype = self.headers.get("Content-Type") or ""
        if ctype.startswith("application/json") and raw:
            info["json"] = json.loads(raw)
        if ctype.startswith("application/x-www-form-urlencoded"):
            info["form"] = urllib.parse.parse_qs(raw.decode())
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            info["form"], info["files"] = {}, {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                data = part.get_payload(decode=True) or b""
                if part.get_filename():
                    info["files"][name] = {"filename": part.get_filename(),
                                           "type": part.get_content_type(),
                                           "content": data.decode("latin-1")}
                else:
                    info["form"][name] = data.decode("latin-1")
        self.send(200, info)

    def route(self):
        if not self.path.startswith(("/anything", "/get", "/post", "/put", "/patch", "/delete")):
            self.body()  # read what the client sent, so the connection stays in step
        u = urllib.parse.urlsplit(self.path)
        parts = [p for p in u.path.split("/") if p]
        q = dict(urllib.parse.parse_qsl(u.query))
        head = parts[0] if parts else ""
        if head in ("anything", "get", "post", "put", "patch", "delete"):
            return self.echo()
        if head == "headers":
            return self.send(200, {"headers": dict(self.headers.items())})
        if head == "status":
            return self.send(int(parts[1]), {"status": int(parts[1])})
        if head == "redirect":
            n = int(parts[1])
            target = "/get" if n <= 1 else f"/redirect/{n - 1}"
            return self.send(302, "", headers=[("Location", target)])
        if head == "redirect-to":
            return self.send(int(q.get("status", 302)), "", headers=[("Location", q["url"])])
        if head == "cookies" and len(parts) == 2 and parts[1] == "set":
            hs = [("Set-Cookie", f"{k}={v}; Path=/") for k, v in q.items()]
            return self.send(302, "", headers=hs + [("Location", "/cookies")])
        if head == "cookies":
            return self.send(200, {"cookies": self.cookies()})
        if head == "basic-auth":
            want = "Basic " + base64.b64encode(f"{parts[1]}:{parts[2]}".encode()).decode()
            if self.headers.get("Authorization") == want:
                return self.send(200, {"authenticated": True, "user": parts[1]})
            return self.send(401, {"authenticated": False},
                             headers=[("WWW-Authenticate", 'Basic realm="test"')])
        if head in ("gzip", "deflate"):
            data = json.dumps({head: True, "items": list(range(200))}).encode()
            comp = gzip.compress(data) if head == "gzip" else zlib.compress(data)
            return self.send(200, comp, headers=[("Content-Encoding", head)])
        if head == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(parts[1])):
                line = f"line {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.write(b"0\r\n\r\n")
            return
        if head == "bytes":
            return self.send(200, b"x" * int(parts[1]), ctype="application/octet-stream")
        if head == "delay":
            time.sleep(float(parts[1]))
            return self.send(200, {"delayed": float(parts[1])})
        return self.send(404, {"error": "not found"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = route


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    srv = Server(("127.0.0.1", port), Handler)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
