/* SPDX-License-Identifier: MIT */
/*
 * sio.h: Engine.IO v4 and Socket.IO v5 packets (the protocols of socket.io 3 and 4), as a codec:
 * no sockets, no loop.
 *
 * Over the websocket transport each WebSocket text message is one Engine.IO packet: a type digit
 * (0 open, 1 close, 2 ping, 3 pong, 4 message, 5 upgrade, 6 noop) and its data. A message
 * carries one Socket.IO packet:
 *
 *   <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]
 *
 * with type 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT,
 * 6 BINARY_ACK. A binary packet is followed by its attachments, one WebSocket binary message
 * each; its JSON holds {"_placeholder":true,"num":i} where attachment i goes.
 */
#ifndef CC_SIO_H
#define CC_SIO_H

#include "core/common.h"
#include "core/strbuf.h"

enum cc_eio_type {
    CC_EIO_OPEN = 0,
    CC_EIO_CLOSE = 1,
    CC_EIO_PING = 2,
    CC_EIO_PONG = 3,
    CC_EIO_MESSAGE = 4,
    CC_EIO_UPGRADE = 5,
    CC_EIO_NOOP = 6,
};

enum cc_sio_type {
    CC_SIO_NONE = -1, /* the Engine.IO packet is not a message */
    CC_SIO_CONNECT = 0,
    CC_SIO_DISCONNECT = 1,
    CC_SIO_EVENT = 2,
    CC_SIO_ACK = 3,
    CC_SIO_CONNECT_ERROR = 4,
    CC_SIO_BINARY_EVENT = 5,
    CC_SIO_BINARY_ACK = 6,
};

#define CC_SIO_MAX_ATTACHMENTS 1000
#define CC_SIO_MAX_ID          ((1ull << 53) - 1) /* JavaScript's safe integers */

/* A parsed packet; every pointer points into the text given to cc_sio_parse(). */
struct cc_sio_packet {
    uint8_t eio;          /* enum cc_eio_type */
    int8_t sio;           /* enum cc_sio_type */
    uint32_t attachments; /* binary packets: how many binary messages follow */
    const char *nsp;      /* the namespace, "/" when the packet names none */
    size_t nsp_len;
    bool has_id;
    uint64_t id;      /* the ack id, when has_id */
    const char *data; /* the JSON payload (a message), or the Engine.IO data; may be empty */
    size_t data_len;
};

/*
 * Parses one Engine.IO packet of |len| bytes. Returns 0, or CC_EPROTO with a static sentence in
 * *|why|: an unknown packet type, an attachment count or ack id that is not a number or too
 * large, a namespace that does not start with '/'.
 */
int cc_sio_parse(const char *s, size_t len, struct cc_sio_packet *p, const char **why);

/*
 * The event name of an EVENT payload (a JSON array whose first element is a string), with its
 * escapes decoded (\uXXXX to UTF-8), into |buf| of |cap| bytes, NUL-terminated; its length in
 * *|name_len|. Returns 0, CC_EPROTO when the payload does not start with a string in an array,
 * or CC_ETOOBIG when the name does not fit.
 */
int cc_sio_event_name(const char *json, size_t len, char *buf, size_t cap, size_t *name_len);

/* Room cc_sio_header() needs besides the namespace. */
#define CC_SIO_HEADER_MAX 48

/*
 * Writes the start of a message packet into |out| (at least CC_SIO_HEADER_MAX + |nsp_len|
 * bytes): "4", the type, "<n>-" for binary types, "<nsp>," unless the namespace is "/" or empty,
 * and the ack id when |has_id|. Returns the bytes written; the JSON payload follows.
 */
size_t cc_sio_header(char *out, enum cc_sio_type type, uint32_t attachments, const char *nsp,
                     size_t nsp_len, bool has_id, uint64_t id);

/* A binary attachment, valid during the callback that gives it. */
struct cc_sio_att {
    const char *data;
    size_t len;
};

/*
 * A binary packet waiting for its attachments, which follow it as WebSocket binary messages,
 * one each. Zeroed, it waits for nothing.
 */
struct cc_sio_asm {
    struct cc_strbuf pkt;    /* the packet's text */
    struct cc_strbuf data;   /* the attachments so far, back to back */
    struct cc_sio_att *view; /* their lengths as they come; where each is, once all came */
    uint32_t cap, want, have;
};

/* Waits for the |n| (1 to CC_SIO_MAX_ATTACHMENTS) attachments of packet |pkt|. */
void cc_sio_asm_start(struct cc_sio_asm *a, const char *pkt, size_t len, uint32_t n);

/* One attachment. True when it was the last one awaited: cc_sio_asm_done() then. An
 * attachment nothing waits for is dropped (false). */
bool cc_sio_asm_add(struct cc_sio_asm *a, const char *data, size_t len);

/* The complete packet's attachments, *|n| of them, valid until the next call on |a|; its text
 * is a->pkt. Afterwards nothing is awaited. */
const struct cc_sio_att *cc_sio_asm_done(struct cc_sio_asm *a, uint32_t *n);

/* Forgets the attachments' bytes once handed on; a large buffer is freed. */
void cc_sio_asm_clear(struct cc_sio_asm *a);

void cc_sio_asm_release(struct cc_sio_asm *a);

#endif
