"""fault_ports.py: the skeleton of the line-protocol fault servers (tcp_faults.py,
mqtt_faults.py, redis_faults.py): one listening port per fault, a thread per connection.

run() prints "listening on SCHEME://127.0.0.1:PORT" (the port of the first mode), then one line
per mode, "MODE SCHEME://127.0.0.1:PORT", and serves until killed; serve(conn, mode) handles one
connection and returns when it is done with it (the connection is closed after it).
"""
import socket
import threading


def listen(serve, mode):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)

    def handle(conn):
        with conn:
            try:
                serve(conn, mode)
            except OSError:
                pass

    def accept():
        while True:
            conn, _ = s.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return s.getsockname()[1]


def run(scheme, modes, serve):
    ports = {m: listen(serve, m) for m in modes}
    print(f"listening on {scheme}://127.0.0.1:{ports[modes[0]]}", flush=True)
    for m in modes:
        print(f"{m} {scheme}://127.0.0.1:{ports[m]}", flush=True)
    threading.Event().wait()
