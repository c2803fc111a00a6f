/* SPDX-License-Identifier: MIT */
/*
 * cdpmsg.h: reading one Chrome DevTools Protocol message (a JSON text from the browser's
 * WebSocket) into the fields cicada routes and measures by. Sans-I/O: no socket, no loop, no
 * Lua.
 *
 * A message is a command's answer ({"id": n, "result": {...}} or {"id": n, "error": {...}}),
 * or an event ({"method": "Domain.event", "params": {...}}); with flattened sessions either
 * carries "sessionId". The network events that make per-resource timings have their fields
 * read as well; everything else stays in the raw text, which the Lua side decodes when it
 * needs it.
 */
#ifndef CC_CDPMSG_H
#define CC_CDPMSG_H

#include "core/common.h"

#include <jansson.h>

/* The network events whose fields are read. */
enum cc_cdp_net {
    CC_CDP_NET_NONE,
    CC_CDP_NET_REQUEST,  /* Network.requestWillBeSent */
    CC_CDP_NET_RESPONSE, /* Network.responseReceived */
    CC_CDP_NET_FINISHED, /* Network.loadingFinished */
    CC_CDP_NET_FAILED,   /* Network.loadingFailed */
};

/*
 * A read message. Every string points into |root| and is valid until cc_cdp_msg_release();
 * an absent string is NULL, an absent number is 0 (or -1 where said).
 */
struct cc_cdp_msg {
    json_t *root;
    int64_t id;          /* the command's id; -1 for an event */
    const char *session; /* sessionId, or NULL (the browser's own connection) */
    const char *method;  /* an event's method, or NULL */
    const char *error;   /* an answer's error.message, or NULL */
    uint8_t net;         /* enum cc_cdp_net */
    const char *request; /* network events: requestId */
    const char *url;     /* requestWillBeSent: request.url */
    double timestamp;    /* requestWillBeSent, loadingFinished, loadingFailed: seconds */
    int status;          /* responseReceived: response.status; -1 when absent */
    int redirect_status; /* requestWillBeSent after a redirect: redirectResponse.status, else -1 */
    double length;       /* loadingFinished: encodedDataLength */
    const char *error_text; /* loadingFailed: errorText */
    bool canceled;          /* loadingFailed: canceled */
};

/*
 * Reads |len| bytes of |data| into |m|. Returns 0, or -1 when the text is not a JSON object or
 * has neither a numeric id nor a string method (|m| then holds nothing to release). Input from
 * the peer: never aborts, whatever the bytes.
 */
int cc_cdp_msg_parse(struct cc_cdp_msg *m, const char *data, size_t len);

/* Frees what cc_cdp_msg_parse() kept. */
void cc_cdp_msg_release(struct cc_cdp_msg *m);

#endif
