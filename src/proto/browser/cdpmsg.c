/* SPDX-License-Identifier: MIT */
/* cdpmsg.c: one Chrome DevTools Protocol message into the fields cicada routes by. */
#include "proto/browser/cdpmsg.h"

#include <string.h>

static const char *str_at(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static double num_at(json_t *o, const char *key, double def)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

/* A status code as CDP sends it (a number, sometimes a real); -1 when absent or absurd. */
static int status_at(json_t *o)
{
    double s = num_at(o, "status", -1);
    return s >= 0 && s < 1000 ? (int)s : -1;
}

static void read_network(struct cc_cdp_msg *m, json_t *params)
{
    const char *meth = m->method + 8; /* after "Network." */
    if (strcmp(meth, "requestWillBeSent") == 0)
        m->net = CC_CDP_NET_REQUEST;
    else if (strcmp(meth, "responseReceived") == 0)
        m->net = CC_CDP_NET_RESPONSE;
    else if (strcmp(meth, "loadingFinished") == 0)
        m->net = CC_CDP_NET_FINISHED;
    else if (strcmp(meth, "loadingFailed") == 0)
        m->net = CC_CDP_NET_FAILED;
    else
        return;
    m->request = str_at(params, "requestId");
    if (!m->request) { /* nothing to match it with: not a network event we can use */
        m->net = CC_CDP_NET_NONE;
        return;
    }
    m->timestamp = num_at(params, "timestamp", 0);
    switch (m->net) {
    case CC_CDP_NET_REQUEST: {
        json_t *req = json_object_get(params, "request");
        m->url = json_is_object(req) ? str_at(req, "url") : NULL;
        json_t *redir = json_object_get(params, "redirectResponse");
        if (json_is_object(redir)) m->redirect_status = status_at(redir);
        if (!m->url) m->net = CC_CDP_NET_NONE;
        break;
    }
    case CC_CDP_NET_RESPONSE: {
        json_t *resp = json_object_get(params, "response");
        if (json_is_object(resp)) m->status = status_at(resp);
        break;
    }
    case CC_CDP_NET_FINISHED:
        m->length = num_at(params, "encodedDataLength", 0);
        if (!(m->length >= 0 && m->length < 1e15)) m->length = 0;
        break;
    case CC_CDP_NET_FAILED:
        m->error_text = str_at(params, "errorText");
        m->canceled = json_is_true(json_object_get(params, "canceled"));
        break;
    default:
        break;
    }
}

int cc_cdp_msg_parse(struct cc_cdp_msg *m, const char *data, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->id = -1;
    m->status = -1;
    m->redirect_status = -1;
    /* JSON_ALLOW_NUL: a page's console text may carry \u0000; the message stays readable */
    json_t *root = json_loadb(data, len, JSON_ALLOW_NUL, NULL);
    if (!root) return -1;
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    m->root = root;
    m->session = str_at(root, "sessionId");
    json_t *id = json_object_get(root, "id");
    if (json_is_integer(id) && json_integer_value(id) >= 0) {
        m->id = (int64_t)json_integer_value(id);
        json_t *err = json_object_get(root, "error");
        if (json_is_object(err)) {
            m->error = str_at(err, "message");
            if (!m->error) m->error = "error";
        } else if (err && !json_is_null(err)) {
            m->error = "error";
        }
        return 0;
    }
    m->method = str_at(root, "method");
    if (!m->method) {
        json_decref(root);
        memset(m, 0, sizeof(*m));
        return -1;
    }
    json_t *params = json_object_get(root, "params");
    if (json_is_object(params) && strncmp(m->method, "Network.", 8) == 0) read_network(m, params);
    return 0;
}

void cc_cdp_msg_release(struct cc_cdp_msg *m)
{
    if (m->root) json_decref(m->root);
    m->root = NULL;
}
