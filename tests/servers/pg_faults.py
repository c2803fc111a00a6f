#!/usr/bin/python3
"""pg_faults.py: a PostgreSQL server (protocol 3.0, no authentication) that misbehaves on purpose.

Each fault has its own port. Prints "listening on postgresql://127.0.0.1:PORT" (the "ok" mode)
first, then "MODE postgresql://127.0.0.1:PORT" for every other mode, then serves until killed.

  ok               answers every query with one row, x = 1 (int4)
  garbage_startup  answers the startup message with bytes that are not the protocol
  garbage_query    starts properly, then answers the first query with garbage
  close_mid        starts properly, then sends a row description and half a data row and
                   closes the connection
  stall_query      starts properly, then never answers a query
  stall_startup    accepts the connection and never answers
  one_per_conn     answers one query properly, then closes the connection (while idle)
"""
import socketserver
import struct
import sys
import threading

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102


def msg(type_, payload=b""):
    return type_ + struct.pack(">I", len(payload) + 4) + payload


def row_description():
    field = b"x\0" + struct.pack(">IhIhih", 0, 0, 23, 4, -1, 0)
    return msg(b"T", struct.pack(">h", 1) + field)


def data_row(value=b"1"):
    return msg(b"D", struct.pack(">h", 1) + struct.pack(">i", len(value)) + value)


def ready():
    return msg(b"Z", b"I")


STARTUP_REPLY = (msg(b"R", struct.pack(">I", 0))
                 + msg(b"S", b"server_version\x0015.0\x00")
                 + msg(b"S", b"client_encoding\x00UTF8\x00")
                 + msg(b"S", b"standard_conforming_strings\x00on\x00")
                 + msg(b"S", b"integer_datetimes\x00on\x00")
                 + msg(b"K", struct.pack(">II", 4242, 1234))
                 + ready())


class Handler(socketserver.BaseRequestHandler):
    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                raise ConnectionError
            buf += chunk
        return buf

    def startup(self):
        """Reads the startup packets (answering SSL and GSS requests with 'N')."""
        while True:
            (length,) = struct.unpack(">I", self.recv_exact(4))
            body = self.recv_exact(length - 4)
            (code,) = struct.unpack(">I", body[:4])
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                self.request.sendall(b"N")
                continue
            if code == CANCEL_REQUEST:
                raise ConnectionError
            return

    def message(self):
        type_ = self.recv_exact(1)
        (length,) = struct.unpack(">I", self.recv_exact(4))
        return type_, self.recv_exact(length - 4)

    def handle(self):
        mode = self.server.mode
        s = self.request
        try:
            if mode == "stall_startup":
                while s.recv(4096):
                    pass
                return
            self.startup()
            if mode == "garbage_startup":
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            s.sendall(STARTUP_REPLY)
            pending = []  # extended protocol: answers owed at the next Sync
            answered = 0
            while True:
                type_, body = self.message()
                if type_ == b"X":
                    return
                if type_ in (b"P", b"B", b"D", b"E"):
                    pending.append(type_)
                    continue
                if type_ not in (b"Q", b"S"):
                    continue
                if mode == "stall_query":
                    continue
                if mode == "garbage_query":
                    s.sendall(b"<html>this is not PostgreSQL</html>\r\n" * 4)
                    return
                out = b""
                for p in pending:
                    out += {b"P": msg(b"1"), b"B": msg(b"2"), b"D": row_description(),
                            b"E": data_row() + msg(b"C", b"SELECT 1\x00")}[p]
                if type_ == b"Q":
                    out += row_description() + data_row() + msg(b"C", b"SELECT 1\x00")
                pending = []
                if mode == "close_mid":
                    head = row_description()
                    partial = b"D" + struct.pack(">I", 100) + struct.pack(">h", 1)
                    s.sendall(head + partial)
                    return
                s.sendall(out + ready())
                answered += 1
                if mode == "one_per_conn" and answered == 1:
                    return
        except (ConnectionError, OSError, struct.error):
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    modes = ["ok", "garbage_startup", "garbage_query", "close_mid", "stall_query",
             "stall_startup", "one_per_conn"]
    servers = []
    for mode in modes:
        srv = Server(("127.0.0.1", 0), Handler)
        srv.mode = mode
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(f"listening on postgresql://127.0.0.1:{servers[0].server_address[1]}")
    for srv in servers[1:]:
        print(f"{srv.mode} postgresql://127.0.0.1:{srv.server_address[1]}")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
