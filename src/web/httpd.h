/* SPDX-License-Identifier: MIT */
/*
 * httpd.h: a small HTTP/1.1 server on a caller's libuv loop (the demo shop, the web UI).
 *
 * Requests are parsed with llhttp. A connection is kept alive between requests and may
 * pipeline them; they are handled one at a time and answered in order. A handler gets a
 * request object and answers it either before it returns or later from the loop (a timer, an
 * other connection's event), with one complete response or with a stream (chunked body,
 * server-sent events) written piece by piece. Everything a client sends is bounded: the head
 * (431 beyond max_header_bytes or max_headers), the body (413 beyond max_body_bytes, checked
 * against Content-Length before reading it), and the responses queued for a client that does
 * not read. A malformed request gets 400 and the connection is closed. A connection waiting
 * for a request head longer than idle_timeout_ms is closed.
 *
 * One server belongs to one loop and one thread; nothing here is thread-safe. Several
 * servers on several loops can share a port with CC_HTTPD_REUSEPORT.
 *
 * Errors are negative: libuv's codes (-errno) or the CC_HTTPD_E* codes below.
 */
#ifndef CC_HTTPD_H
#define CC_HTTPD_H

#include "core/common.h"

#include <jansson.h>
#include <uv.h>

/* The httpd's own error codes, in the band -1100..-1199 (libuv's codes are -errno). */
enum {
    CC_HTTPD_ECLOSED = -1100, /* the client is gone; a finishing call still released the request */
    CC_HTTPD_ESTATE = -1101,  /* the call does not fit the response's state */
    CC_HTTPD_EFULL = -1102,   /* the client does not read: too much output queued; closed */
    CC_HTTPD_ETLS = -1103,    /* the TLS certificate or key could not be used */
};

struct cc_httpd;
struct cc_httpd_req;

struct cc_httpd_opts {
    size_t max_header_bytes;  /* request line and header block, raw bytes; 431 beyond */
    size_t max_headers;       /* header fields per request (trailers included); 431 beyond */
    size_t max_body_bytes;    /* decoded request body; 413 beyond */
    size_t max_output_bytes;  /* response bytes queued for one client; a stream fails beyond */
    uint32_t idle_timeout_ms; /* time for a request head to arrive, or a stalled read/write */
    uint32_t max_connections; /* connections beyond this are accepted and closed at once */
};

/* Fills |o| with the defaults: 16 KiB, 100 headers, 1 MiB, 8 MiB, 30 s, 10000. */
void cc_httpd_opts_defaults(struct cc_httpd_opts *o);

/* Counters of one server, since cc_httpd_new(). */
struct cc_httpd_stats {
    uint64_t connections;   /* connections accepted (those refused over the limit included) */
    uint64_t refused;       /* of connections: closed at once, over max_connections */
    uint64_t open;          /* connections open now */
    uint64_t requests;      /* complete requests handed to a handler or to the 404/405 path */
    uint64_t client_errors; /* requests answered 400, 413 or 431 by the server itself */
    uint64_t timeouts;      /* connections closed by idle_timeout_ms */
    uint64_t aborted;       /* requests whose client went away before their response ended */
    uint64_t tls_failures;  /* of connections: TLS handshakes that failed (HTTPS only) */
};

/*
 * Handles one request. |req| belongs to the handler until it finishes the response with
 * cc_httpd_respond(), cc_httpd_respond_json() or cc_httpd_stream_end(), before returning or
 * later; every request must be finished exactly once, even after its client went away (the
 * call then just releases it). |req| and the strings it gives are valid until then.
 */
typedef void cc_httpd_handler_cb(struct cc_httpd_req *req, void *arg);

/*
 * Called from the loop when the connection of an unfinished request closes (the client closed
 * or shut down its side, a write failed or stalled past idle_timeout_ms, a stream overflowed
 * max_output_bytes, cc_httpd_close()). The handler still has to finish |req|; the usual
 * reaction is to stop its timer and call cc_httpd_respond() or cc_httpd_stream_end(), which
 * return CC_HTTPD_ECLOSED and release it.
 */
typedef void cc_httpd_abort_cb(struct cc_httpd_req *req, void *arg);

/* Called once from the loop when a closed server has released everything. */
typedef void cc_httpd_close_cb(void *arg);

/*
 * Creates a server on |loop| (borrowed; it must outlive the server). |opts| is copied; NULL
 * means the defaults. Aborts on memory exhaustion only. Ignores SIGPIPE process-wide, so that
 * writing to a closed socket fails with EPIPE instead of ending the program.
 */
struct cc_httpd *cc_httpd_new(uv_loop_t *loop, const struct cc_httpd_opts *opts);

/*
 * Adds a route. |method| is an HTTP method name ("GET", "POST"...) or NULL for any method; a
 * GET route also answers HEAD (the body is left out). |pattern| (copied) is an absolute path
 * matched against the request path (not percent-decoded, without the query):
 *   "/items"       exactly that path;
 *   "/items/{id}"  a segment "{name}" matches one non-empty path segment, available with
 *                  cc_httpd_req_param(req, "id"); up to 4 per pattern;
 *   a star as the last segment ("/assets/" then "*") matches the rest of the path (possibly
 *                  empty), available as the parameter "*".
 * Routes are tried in the order they were added; the first match wins. A path that matches
 * only routes of other methods gets 405 with an Allow header, one that matches none 404.
 *
 * Returns 0, or UV_EINVAL for an unknown method or a malformed pattern.
 */
int cc_httpd_route(struct cc_httpd *s, const char *method, const char *pattern,
                   cc_httpd_handler_cb *cb, void *arg);

#define CC_HTTPD_REUSEPORT 1u /* SO_REUSEPORT: other servers (threads) may bind the same port */

/*
 * Starts listening on |host| (an IPv4 or IPv6 literal, or "localhost" for 127.0.0.1) and
 * |port| (0: a free port, see cc_httpd_port()). |flags|: 0 or CC_HTTPD_REUSEPORT.
 *
 * Returns 0, or: UV_EINVAL (|host| is not an address literal), CC_HTTPD_ESTATE (already
 * listening or closing), -errno from socket(2), bind(2) or listen(2) (e.g. UV_EADDRINUSE).
 */
int cc_httpd_listen(struct cc_httpd *s, const char *host, int port, unsigned flags);

/*
 * Serves HTTPS instead of HTTP: each connection accepted from now on does a TLS 1.2 or 1.3
 * handshake first, with the certificate chain in |cert_file| and the private key in |key_file|
 * (both PEM, read now). Records are encrypted and decrypted with memory BIOs on the server's
 * loop; a connection that fails its handshake is closed (counted in tls_failures), and the
 * last response on a connection is followed by a close_notify. Call it before
 * cc_httpd_listen(). Test connections (cc_httpd_test_conn_new) stay plain.
 *
 * Returns 0, or with a message in |err| (caller frees): CC_HTTPD_ETLS (a file cannot be read
 * or parsed, the key does not match the certificate), CC_HTTPD_ESTATE (already listening, or
 * TLS already set up).
 */
int cc_httpd_tls(struct cc_httpd *s, const char *cert_file, const char *key_file, char **err);

/* The port the server listens on, or -1 before cc_httpd_listen() succeeded. */
int cc_httpd_port(const struct cc_httpd *s);

uv_loop_t *cc_httpd_loop(const struct cc_httpd *s);
void cc_httpd_get_stats(const struct cc_httpd *s, struct cc_httpd_stats *out);

/*
 * Stops listening, closes every connection (aborting unfinished requests, see
 * cc_httpd_abort_cb) and frees the server once the last request has been finished; then
 * calls |cb| (may be NULL) from the loop. Call it once; |s| must not be used afterwards.
 */
void cc_httpd_close(struct cc_httpd *s, cc_httpd_close_cb *cb, void *arg);

/*
 * Request accessors. The strings are NUL-terminated, owned by the request and valid until the
 * response is finished.
 */
struct cc_httpd *cc_httpd_req_server(const struct cc_httpd_req *r);
/* "GET", "POST"... */
const char *cc_httpd_req_method(const struct cc_httpd_req *r);
/* The request target up to the '?', not percent-decoded; "/" style (or "host:port" for CONNECT). */
const char *cc_httpd_req_path(const struct cc_httpd_req *r);
/* The query after the '?' (without it), "" when there is none. */
const char *cc_httpd_req_query(const struct cc_httpd_req *r);
/* 10 for HTTP/1.0, 11 for HTTP/1.1. */
int cc_httpd_req_version(const struct cc_httpd_req *r);
/* The value of the first header named |name| (any case), trailing blanks removed; or NULL. */
const char *cc_httpd_req_header(const struct cc_httpd_req *r, const char *name);
/* Number of header fields, and the |i|th one (0-based); false if |i| is out of range. */
size_t cc_httpd_req_header_count(const struct cc_httpd_req *r);
bool cc_httpd_req_header_at(const struct cc_httpd_req *r, size_t i, const char **name,
                            const char **value);
/* The decoded body (NUL-terminated after |*len| bytes; "" when there is none). |len| may be NULL.
 */
const char *cc_httpd_req_body(const struct cc_httpd_req *r, size_t *len);
/* The route parameter |name| (see cc_httpd_route()), or NULL. */
const char *cc_httpd_req_param(const struct cc_httpd_req *r, const char *name);
/* Whether the connection stays open after this response. */
bool cc_httpd_req_keep_alive(const struct cc_httpd_req *r);

/*
 * Finds |key| in an application/x-www-form-urlencoded string |form| of |len| bytes (a query
 * string or a form body) and writes its percent-decoded value ('+' is a space), NUL-terminated,
 * to |out| of |size| bytes. A key without '=' has the value "".
 *
 * Returns the value's length, or: UV_ENOENT (no such key), UV_ENOBUFS (|size| too small),
 * UV_EINVAL (a malformed %-escape).
 */
int cc_httpd_form_get(const char *form, size_t len, const char *key, char *out, size_t size);
/* cc_httpd_form_get() on the request's query string. */
int cc_httpd_req_query_get(const struct cc_httpd_req *r, const char *key, char *out, size_t size);
/*
 * Percent-decodes |len| bytes of |in| into |out| of |size| bytes (NUL-terminated); with
 * |plus_is_space| '+' becomes ' '. Returns the decoded length, UV_ENOBUFS or UV_EINVAL.
 */
int cc_httpd_url_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t size);

/*
 * Registers |cb| to be called if the connection closes before |r| is finished (replacing an
 * earlier one). It is never called from inside an httpd call made by the handler.
 */
void cc_httpd_req_on_abort(struct cc_httpd_req *r, cc_httpd_abort_cb *cb, void *arg);
/* Whether the client of |r| is gone (writes will fail; finishing releases the request). */
bool cc_httpd_req_aborted(const struct cc_httpd_req *r);

/*
 * Adds a response header |name|: |value| (both copied) before the response starts. Do not
 * add Content-Length, Transfer-Encoding, Connection, Date or Server: the server writes them.
 * Returns 0, UV_EINVAL (a name that is not a token, a value with CR, LF or NUL) or
 * CC_HTTPD_ESTATE (the response has started).
 */
int cc_httpd_res_header(struct cc_httpd_req *r, const char *name, const char *value);

/*
 * Sends a complete response and finishes |r|: |status| (100-999; no body is sent for 1xx, 204,
 * 304 and HEAD), |content_type| (may be NULL: no Content-Type), the header fields added with
 * cc_httpd_res_header(), and |len| bytes of |body| (copied; may be NULL when |len| is 0).
 *
 * Returns 0, CC_HTTPD_ECLOSED (the client is gone; |r| is released all the same), or
 * CC_HTTPD_ESTATE (a stream was started: use cc_httpd_stream_end(); |r| is not finished).
 */
int cc_httpd_respond(struct cc_httpd_req *r, int status, const char *content_type, const void *body,
                     size_t len);
/* cc_httpd_respond() with |json| (borrowed) serialised compactly as application/json. */
int cc_httpd_respond_json(struct cc_httpd_req *r, int status, const json_t *json);

/*
 * Starts a streamed response: the status line and headers now, the body by
 * cc_httpd_stream_write() (HTTP/1.1: chunked; HTTP/1.0: until the connection closes).
 * Returns 0, CC_HTTPD_ECLOSED or CC_HTTPD_ESTATE (already started). The request is not
 * finished either way: end it with cc_httpd_stream_end().
 */
int cc_httpd_stream_start(struct cc_httpd_req *r, int status, const char *content_type);
/*
 * Queues |len| bytes (copied) of a started stream; 0 bytes is a no-op. Returns 0,
 * CC_HTTPD_ESTATE (not started), CC_HTTPD_ECLOSED, or CC_HTTPD_EFULL when more than
 * max_output_bytes would be queued for this client: the connection is then closed and the
 * abort callback follows from the loop.
 */
int cc_httpd_stream_write(struct cc_httpd_req *r, const void *data, size_t len);
/* Ends a started stream and finishes |r|. Returns 0, CC_HTTPD_ECLOSED (released all the
 * same) or CC_HTTPD_ESTATE (not started: nothing done). */
int cc_httpd_stream_end(struct cc_httpd_req *r);

/* Starts a server-sent-events stream: 200, text/event-stream, Cache-Control: no-cache. */
int cc_httpd_sse_start(struct cc_httpd_req *r);
/*
 * Writes one event: "event: |event|" when |event| is not NULL, one "data: " line per line of
 * |data|, and the blank line that ends it. Returns what cc_httpd_stream_write() returns.
 */
int cc_httpd_sse_send(struct cc_httpd_req *r, const char *event, const char *data);

/*
 * Connections without a socket, for fuzzers and codec tests: bytes are fed in by the caller
 * and the server's output is collected. Handlers run as for a real connection.
 */
struct cc_httpd_conn;
struct cc_httpd_conn *cc_httpd_test_conn_new(struct cc_httpd *s);
/* Feeds |len| bytes; returns false once the server has closed the connection. */
bool cc_httpd_test_conn_feed(struct cc_httpd_conn *c, const void *data, size_t len);
/* Everything the server wrote on |c| so far (not NUL-terminated), owned by |c|. */
const char *cc_httpd_test_conn_output(const struct cc_httpd_conn *c, size_t *len);
/* Frees the connection; an unfinished request is aborted first (its abort callback runs). */
void cc_httpd_test_conn_free(struct cc_httpd_conn *c);

#endif
