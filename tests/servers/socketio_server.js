// socketio_server.js: a Socket.IO 4 server (npm's socket.io) for the tests and benchmarks.
// Usage: node socketio_server.js [PING_INTERVAL_MS]; prints "listening on http://127.0.0.1:PORT"
// (NODE_PATH must lead to the socket.io package: tests/servers/socketio-npm prints it).
// The ping timeout is half the interval, and at least 1000 ms.
//
// Namespace "/": on connection it emits "welcome" {sid}; "echo" is emitted back with the same
// arguments; "ack" answers its acknowledgement with its arguments; "binary" answers with the
// buffer it got and its length; "ask" makes the server emit "question" 42 asking for an
// acknowledgement, and emit "answer_was" with the answer; "kick" disconnects the client.
// Namespace "/admin" requires auth {token: "secret"}.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const pingInterval = parseInt(process.argv[2] || "25000", 10);
const server = http.createServer();
const io = new Server(server, {
  pingInterval,
  // a pong may be late on a loaded machine: at least a second before the server gives up
  pingTimeout: Math.max(1000, Math.floor(pingInterval / 2)),
  maxHttpBufferSize: 16 << 20,
});

function handlers(socket) {
  socket.emit("welcome", { sid: socket.id });
  socket.on("echo", (...args) => socket.emit("echo", ...args));
  socket.on("ack", (...args) => {
    const cb = args.pop();
    if (typeof cb === "function") cb(...args);
  });
  socket.on("binary", (buf, cb) => {
    if (typeof cb === "function") cb(buf, Buffer.isBuffer(buf) ? buf.length : -1);
  });
  socket.on("ask", () => {
    socket.emit("question", 42, (answer) => socket.emit("answer_was", answer));
  });
  socket.on("kick", () => socket.disconnect(true));
}

io.on("connection", handlers);
const admin = io.of("/admin");
admin.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  if (auth.token === "secret") next();
  else next(new Error("not authorized"));
});
admin.on("connection", handlers);

server.listen(0, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
