#!/usr/bin/python3
"""openai_fake.py: a fake OpenAI-compatible server whose timing is set, not computed (stdlib).

Usage: openai_fake.py [--ttft-ms N] [--itl-ms N] [--tokens N] [--no-usage] [--api-key KEY]
Prints "listening on http://127.0.0.1:PORT" first, then serves until killed.

POST /v1/chat/completions, /v1/completions (streamed with "stream": true, or not) and
/v1/embeddings; GET /v1/models. A streamed answer sends its first output chunk TTFT after
the request came, then one every ITL (each chunk one token, "tok<i> "), then a chunk with
finish_reason, then (when the request asks with stream_options.include_usage, unless
--no-usage) a usage chunk, then "data: [DONE]". Deadlines count from the request's arrival,
so delays do not add up. A non-streamed answer comes whole after TTFT + (tokens - 1) * ITL.

Each request may change its own answer with headers:
  X-Fake-TTFT-Ms, X-Fake-ITL-Ms, X-Fake-Tokens   timing and length (or the body's max_tokens)
  X-Fake-Usage: 0 | 1                             never / always send the usage chunk
  X-Fake-Tokens-Per-Chunk: N                      N tokens per output chunk
  X-Fake-Error: 429 | 500                         that status with an OpenAI error body
  X-Fake-Stamp: 1                                 the first token is "t=<send time> ", the
                                                  server's monotonic clock when it sent it
  X-Fake-Fault: garbage | close-mid | stall | error-event
      garbage      after the first token, an event whose data is not JSON
      close-mid    after two tokens, the connection closes in the middle of the stream
      stall        after the first token, nothing more
      error-event  after the first token, an {"error": ...} event
With --api-key, a request without "Authorization: Bearer KEY" gets 401.

GET /fake/stats gives how late the server itself sent first tokens (ms past arrival + TTFT:
count, p50, p99, max), for benchmarks, and "slip_max_ms": the most that any answer's bytes
(each output chunk, the end of a stream, a whole answer) left after the time they were due,
for tests, since the last POST /fake/reset; and "paths": how many requests each path had.

Every API path is also served under the prefix /proxy (/proxy/v1/chat/completions...), as a
gateway that mounts the API below a path of its own would.
"""
import argparse
import asyncio
import json
import time

args = None
late = []  # how late first tokens were sent (s), for /fake/stats
slip = [0.0]  # the most any write was late (s), for /fake/stats
paths = {}  # requests per path, for /fake/stats


def wrote(due):
    """Notes how late a write that was due at |due| (monotonic s) went out."""
    slip[0] = max(slip[0], time.monotonic() - due)


def status_line(code):
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
               429: "Too Many Requests", 500: "Internal Server Error"}
    return f"HTTP/1.1 {code} {reasons.get(code, 'Unknown')}\r\n".encode()


def json_response(writer, code, obj, extra=b""):
    body = json.dumps(obj).encode()
    writer.write(status_line(code) + b"Content-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def error_body(code):
    kinds = {401: ("Incorrect API key provided", "invalid_request_error"),
             429: ("Rate limit reached for requests", "requests"),
             500: ("The server had an error while processing your request", "server_error")}
    msg, typ = kinds.get(code, ("error", "error"))
    return {"error": {"message": msg, "type": typ, "param": None, "code": code}}


def chunk(data):
    """One event as an HTTP chunk."""
    payload = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def sleep_until(deadline):
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def stream(writer, kind, model, t0, ttft, itl, tokens, per_chunk, usage, fault, prompt,
                 stamp):
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
    cid = f"chatcmpl-{int(t0 * 1e6)}"
    base = {"id": cid, "created": int(time.time()), "model": model,
            "object": "chat.completion.chunk" if kind == "chat" else "text_completion"}

    def event(choice):
        return chunk(json.dumps(dict(base, choices=[choice])).encode())

    if kind == "chat":  # the role comes first and carries no output
        writer.write(event({"index": 0, "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None}))
    chunks = (tokens + per_chunk - 1) // per_chunk
    sent = 0
    for i in range(chunks):
        await sleep_until(t0 + ttft + i * itl)
        if i == 0 and len(late) < 1000000:
            late.append(time.monotonic() - (t0 + ttft))
        n = min(per_chunk, tokens - sent)
        text = "".join(f"tok{sent + j} " for j in range(n))
        if stamp and i == 0:  # for benchmarks: when it left, by the clock clients share
            text = f"t={time.monotonic():.6f} "
        sent += n
        if kind == "chat":
            writer.write(event({"index": 0, "delta": {"content": text}, "finish_reason": None}))
        else:
            writer.write(event({"index": 0, "text": text, "finish_reason": None}))
        wrote(t0 + ttft + i * itl)
        if fault == "close-mid" and i == 1:
            writer.write(b"3f\r\ndata: {\"id\": \"cut")
            await writer.drain()
            writer.transport.abort()
            return False
        if fault == "garbage" and i == 0:
            writer.write(chunk(b"this is not json"))
        if fault == "error-event" and i == 0:
            writer.write(chunk(json.dumps({"error": {"message": "the model is overloaded",
                                                     "type": "server_error"}}).encode()))
        if fault == "stall" and i == 0:
            await writer.drain()
            await asyncio.sleep(3600)
        await writer.drain()
    if kind == "chat":
        writer.write(event({"index": 0, "delta": {}, "finish_reason": "length"}))
    else:
        writer.write(event({"index": 0, "text": "", "finish_reason": "length"}))
    if usage:
        writer.write(chunk(json.dumps(dict(base, choices=[], usage={
            "prompt_tokens": prompt, "completion_tokens": tokens,
            "total_tokens": prompt + tokens})).encode()))
    writer.write(chunk(b"[DONE]") + b"0\r\n\r\n")
    wrote(t0 + ttft + max(0, chunks - 1) * itl)
    await writer.drain()
    return True


async def answer(reader, writer, method, path, headers, body):
    t0 = time.monotonic()
    if path == "/fake/stats":
        xs = sorted(late)
        pick = (lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000) if xs else (lambda q: 0)
        json_response(writer, 200, {"count": len(xs), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                                    "max_ms": xs[-1] * 1000 if xs else 0,
                                    "slip_max_ms": slip[0] * 1000, "paths": paths})
        return True
    if path == "/fake/reset":
        late.clear()
        slip[0] = 0.0
        paths.clear()
        json_response(writer, 200, {})
        return True
    paths[path] = paths.get(path, 0) + 1
    if path.startswith("/proxy/"):
        path = path[len("/proxy"):]
    if method == "GET" and path == "/v1/models":
        json_response(writer, 200, {"object": "list", "data": [
            {"id": "fake-model", "object": "model", "owned_by": "cicada"}]})
        return True
    if args.api_key and headers.get("authorization") != "Bearer " + args.api_key:
        json_response(writer, 401, error_body(401))
        return True
    kind = {"/v1/chat/completions": "chat", "/v1/completions": "completion",
            "/v1/embeddings": "embeddings"}.get(path)
    if method != "POST" or not kind:
        json_response(writer, 404, {"error": {"message": f"no {method} {path}"}})
        return True
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        json_response(writer, 400, {"error": {"message": "the body is not JSON"}})
        return True
    err = headers.get("x-fake-error")
    if err:
        json_response(writer, int(err), error_body(int(err)),
                      b"Retry-After: 1\r\n" if err == "429" else b"")
        return True
    model = req.get("model", "fake-model")
    if kind == "embeddings":
        inputs = req.get("input", "")
        n = len(inputs) if isinstance(inputs, list) else 1
        json_response(writer, 200, {"object": "list", "model": model, "data": [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)],
            "usage": {"prompt_tokens": 3 * n, "total_tokens": 3 * n}})
        return True
    ttft = float(headers.get("x-fake-ttft-ms", args.ttft_ms)) / 1000
    itl = float(headers.get("x-fake-itl-ms", args.itl_ms)) / 1000
    tokens = int(headers.get("x-fake-tokens", req.get("max_tokens") or args.tokens))
    per_chunk = max(1, int(headers.get("x-fake-tokens-per-chunk", "1")))
    asked = bool((req.get("stream_options") or {}).get("include_usage"))
    usage = {"0": False, "1": True}.get(headers.get("x-fake-usage"), asked and args.usage)
    prompt = len(json.dumps(req.get("messages", req.get("prompt", "")))) // 4
    if req.get("stream"):
        return await stream(writer, kind, model, t0, ttft, itl, tokens, per_chunk, usage,
                            headers.get("x-fake-fault"), prompt, headers.get("x-fake-stamp") == "1")
    await sleep_until(t0 + ttft + max(0, tokens - 1) * itl)
    text = "".join(f"tok{i} " for i in range(tokens))
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": "length"}
    else:
        choice = {"index": 0, "text": text, "finish_reason": "length"}
    obj = {"id": "cmpl-1", "object": "chat.completion" if kind == "chat" else "text_completion",
           "created": int(time.time()), "model": model, "choices": [choice]}
    if headers.get("x-fake-usage") != "0":
        obj["usage"] = {"prompt_tokens": prompt, "completion_tokens": tokens,
                        "total_tokens": prompt + tokens}
    json_response(writer, 200, obj)
    wrote(t0 + ttft + max(0, tokens - 1) * itl)
    return True


async def serve(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            parts = line.decode("latin-1").split()
            if len(parts) < 2:
                break
            method, path = parts[0], parts[1].split("?")[0]
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            body = await reader.readexactly(n) if n else b""
            if not await answer(reader, writer, method, path, headers, body):
                break
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=100)
    ap.add_argument("--itl-ms", type=float, default=20)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--no-usage", dest="usage", action="store_false")
    ap.add_argument("--api-key")
    args = ap.parse_args()
    server = await asyncio.start_server(serve, "127.0.0.1", args.port, backlog=4096)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
