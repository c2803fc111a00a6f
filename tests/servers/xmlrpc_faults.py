#!/usr/bin/python3
"""xmlrpc_faults.py: an XML-RPC endpoint that misbehaves on purpose, one fault per path.

Prints "listening on http://127.0.0.1:PORT" first, then serves until killed. Every path reads
the whole request (a POST with a Content-Length) before it misbehaves.

  /ok             a well-formed response: the int 1
  /garbage        random bytes instead of HTTP, then a close
  /not-xml        200 OK whose body is not XML
  /html           200 OK with an HTML error page, as a proxy in the way sends
  /truncated      200 OK, a complete HTTP body holding half an XML-RPC response
  /bad-value      200 OK, an XML-RPC response whose int is not a number
  /empty          200 OK with an empty body
  /bad-fault      a <fault> without its faultString
  /close-mid      Content-Length 500, 100 bytes of it, then a close
  /stall          reads the request, never answers
  /http-500       500 Internal Server Error
"""
import os
import socket
import sys
import threading

OK = (b'<?xml version="1.0"?>\n<methodResponse><params><param><value><int>1</int></value>'
      b'</param></params></methodResponse>\n')


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return lines[0].split(" ")[1] if " " in lines[0] else "/"


def respond(conn, body, status=b"200 OK", ctype=b"text/xml"):
    conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                 % (status, ctype, len(body), body))


def handle(conn):
    try:
        while True:
            path = read_request(conn)
            if path is None:
                break
            if path == "/ok":
                respond(conn, OK)
            elif path == "/garbage":
                conn.sendall(os.urandom(512))
                break
            elif path == "/not-xml":
                respond(conn, b"this is not XML <<<")
            elif path == "/html":
                respond(conn, b"<html><body><h1>502 Bad Gateway</h1></body></html>", ctype=b"text/html")
            elif path == "/truncated":
                respond(conn, OK[:len(OK) // 2])
            elif path == "/bad-value":
                respond(conn, OK.replace(b"<int>1</int>", b"<int>one</int>"))
            elif path == "/empty":
                respond(conn, b"")
            elif path == "/bad-fault":
                respond(conn, b"<methodResponse><fault><value><struct><member><name>faultCode</name>"
                              b"<value><int>3</int></value></member></struct></value></fault>"
                              b"</methodResponse>")
            elif path == "/close-mid":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 500\r\n\r\n"
                             + OK[:100])
                break
            elif path == "/stall":
                threading.Event().wait(600)
                break
            elif path == "/http-500":
                respond(conn, b"internal error", status=b"500 Internal Server Error", ctype=b"text/plain")
            else:
                respond(conn, b"no such path", status=b"404 Not Found", ctype=b"text/plain")
    except OSError:
        pass
    finally:
        conn.close()


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    srv.listen(1024)
    print(f"listening on http://127.0.0.1:{srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
