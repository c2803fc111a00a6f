/* SPDX-License-Identifier: MIT */
/*
 * handshake.h: the client side of the WebSocket opening handshake (RFC 6455 section 4), as a
 * codec: it writes the upgrade request and reads the server's answer from bytes fed in any
 * pieces. No sockets, no loop.
 *
 * The answer is accepted only as RFC 6455 section 4.1 asks of a client: status 101, an
 * Upgrade header naming websocket, a Connection header with the upgrade token, the
 * Sec-WebSocket-Accept that the key calls for, a subprotocol only if it was one we offered,
 * and no extension (we offer none). The bytes after the header block are the first frames.
 */
#ifndef CC_WS_HANDSHAKE_H
#define CC_WS_HANDSHAKE_H

#include "core/common.h"
#include "core/strbuf.h"

#include <llhttp.h>

#define CC_WS_KEY_LEN        24          /* base64 of 16 random bytes */
#define CC_WS_ACCEPT_LEN     28          /* base64 of a SHA-1 */
#define CC_WS_MAX_HEAD_BYTES (64 * 1024) /* the response's status line and headers */

/* Feed results besides the negative error codes. */
enum { CC_WS_HS_MORE = 0, CC_WS_HS_DONE = 1 };

struct cc_ws_hs {
    llhttp_t parser;
    char accept[CC_WS_ACCEPT_LEN + 1]; /* the Sec-WebSocket-Accept we expect */
    char *offered;                     /* the subprotocols we offered, "a, b" (owned), or NULL */
    uint32_t head_bytes;               /* fed so far, for the cap */
    int status;                        /* the response's status, once known */
    int error;                         /* 0, or the code a failed feed returned */
    bool upgrade_ok, connection_ok, accept_ok, accept_seen;
    bool done;
    char name[32]; /* the header name being read (longer names are none we check) */
    uint32_t name_len;
    bool name_long;
    char value[512]; /* its value, if the name is one we check */
    uint32_t value_len;
    bool value_long;
    char reason[64]; /* the status line's reason phrase, for messages */
    uint32_t reason_len;
    char protocol[128]; /* the subprotocol the server chose, "" if none */
    char errmsg[256];   /* why the handshake failed */
};

/* A fresh random key: CC_WS_KEY_LEN characters and a NUL into |key|. */
void cc_ws_key_new(char key[CC_WS_KEY_LEN + 1]);

/* The Sec-WebSocket-Accept value for |key|: base64(SHA-1(key + the RFC's GUID)). */
void cc_ws_accept_for(const char *key, char out[CC_WS_ACCEPT_LEN + 1]);

/*
 * Appends the upgrade request to |b|: GET |target| with Host |authority|, the key, version 13,
 * |protocols| ("a, b", or NULL for none) and |headers| (complete "Name: value\r\n" lines, or
 * NULL), which may override User-Agent and add Origin, cookies or authorisation.
 */
void cc_ws_hs_request(struct cc_strbuf *b, const char *target, const char *authority,
                      const char *key, const char *protocols, const char *headers);

/* Prepares |hs| to read the answer to a request sent with |key| and |protocols| (copied). */
void cc_ws_hs_init(struct cc_ws_hs *hs, const char *key, const char *protocols);
void cc_ws_hs_release(struct cc_ws_hs *hs);

/*
 * Reads |len| bytes of the server's answer. Returns CC_WS_HS_MORE when it needs more,
 * CC_WS_HS_DONE when the handshake succeeded, with *|used| set to the bytes of |data| that
 * belong to it (the rest are frames), or a negative code with a sentence in hs->errmsg:
 *   CC_EPROTO   not HTTP, a status other than 101, or a header that breaks the rules above
 *   CC_ETOOBIG  the header block is larger than CC_WS_MAX_HEAD_BYTES
 * After DONE or an error it must not be fed again (it returns the same result).
 */
int cc_ws_hs_feed(struct cc_ws_hs *hs, const char *data, size_t len, size_t *used);

#endif
