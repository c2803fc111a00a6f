/* SPDX-License-Identifier: MIT */
/* tls.c: OpenSSL client contexts, the per-context session cache, failure texts; see tls.h. */
#include "core/tls.h"
#include "core/err.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define TLS_SESSIONS_DEFAULT 256

/* One server's last session. |stamp| orders the entries by last use for eviction. */
struct tls_session_entry {
    uint64_t key;
    uint64_t stamp;
    SSL_SESSION *sess;
};

/* SSL ex_data slot holding the connection's session cache key (a uintptr_t, not a pointer). */
static int key_index = -1;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void tls_init_once(void)
{
    key_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* Formats into a new string: these run only on failure paths. */
static CC_PRINTF(1, 2) char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = cc_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* The reason of the oldest queued OpenSSL error, and an empty queue afterwards. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return reason ? reason : "unknown reason";
}

static int version_of(enum cc_tls_version v, int fallback)
{
    switch (v) {
    case CC_TLS_1_2:
        return TLS1_2_VERSION;
    case CC_TLS_1_3:
        return TLS1_3_VERSION;
    default:
        return fallback;
    }
}

/* ---- session cache -------------------------------------------------------------------------- */

static bool session_usable(SSL_SESSION *s)
{
    if (!SSL_SESSION_is_resumable(s)) return false;
    time_t end = (time_t)SSL_SESSION_get_time(s) + (time_t)SSL_SESSION_get_timeout(s);
    return end > time(NULL);
}

static void tls_session_put(struct cc_tls_ctx *ctx, uint64_t key, SSL_SESSION *sess)
{
    struct tls_session_entry *slot = NULL;
    for (uint32_t i = 0; i < ctx->nsessions; i++) {
        if (ctx->sessions[i].key == key) {
            slot = &ctx->sessions[i];
            break;
        }
    }
    if (!slot && ctx->nsessions < ctx->sessions_max) {
        slot = &ctx->sessions[ctx->nsessions++];
        slot->sess = NULL;
    }
    if (!slot) {
        slot = &ctx->sessions[0];
        for (uint32_t i = 1; i < ctx->nsessions; i++)
            if (ctx->sessions[i].stamp < slot->stamp) slot = &ctx->sessions[i];
    }
    if (slot->sess) SSL_SESSION_free(slot->sess);
    slot->key = key;
    slot->stamp = ++ctx->session_clock;
    slot->sess = sess;
}

static SSL_SESSION *tls_session_get(struct cc_tls_ctx *ctx, uint64_t key)
{
    for (uint32_t i = 0; i < ctx->nsessions; i++) {
        struct tls_session_entry *s = &ctx->sessions[i];
        if (s->key != key) continue;
        if (!session_usable(s->sess)) {
            SSL_SESSION_free(s->sess);
            *s = ctx->sessions[--ctx->nsessions];
            return NULL;
        }
        s->stamp = ++ctx->session_clock;
        return s->sess;
    }
    return NULL;
}

/*
 * OpenSSL hands us every session the server establishes or issues (a TLS 1.3 server sends its
 * tickets after the handshake, so this runs from inside SSL_read). The newest one replaces the
 * server's entry. Returning 1 keeps the reference OpenSSL passed us.
 */
static int tls_on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct cc_tls_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!ctx || !SSL_SESSION_is_resumable(sess)) return 0;
    tls_session_put(ctx, (uint64_t)(uintptr_t)SSL_get_ex_data(ssl, key_index), sess);
    return 1;
}

/* ---- contexts ------------------------------------------------------------------------------- */

static int ctx_fail(struct cc_tls_ctx *ctx, int rv, char **err, char *msg)
{
    if (err)
        *err = msg;
    else
        cc_free(msg);
    cc_tls_ctx_unref(ctx);
    return rv;
}

/* Builds the ALPN wire format (RFC 7301 §3.1: length-prefixed names) and the string copies. */
static int ctx_set_alpn(struct cc_tls_ctx *ctx, const char *const *alpn, char **msg)
{
    size_t n = 0, wire_len = 0;
    for (; alpn[n]; n++) {
        size_t len = strlen(alpn[n]);
        if (len == 0 || len > 255) {
            *msg = xasprintf("invalid ALPN protocol name '%s'", alpn[n]);
            return CC_ECONFIG;
        }
        wire_len += 1 + len;
    }
    if (n == 0) return 0;
    unsigned char *wire = cc_xmalloc(wire_len);
    ctx->alpn = cc_xcalloc(n + 1, sizeof(char *));
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(alpn[i]);
        ctx->alpn[i] = cc_xstrdup(alpn[i]);
        wire[off++] = (unsigned char)len;
        memcpy(wire + off, alpn[i], len);
        off += len;
    }
    int rv = SSL_CTX_set_alpn_protos(ctx->ssl_ctx, wire, (unsigned)wire_len); /* 0 = success */
    cc_free(wire);
    if (rv != 0) {
        *msg = xasprintf("cannot set ALPN protocols: %s", ssl_reason());
        return CC_ETLS;
    }
    return 0;
}

int cc_tls_ctx_new(struct cc_tls_ctx **out, const struct cc_tls_opts *opts, char **err)
{
    static const struct cc_tls_opts defaults = {0};
    struct cc_tls_ctx *ctx;
    char *msg = NULL;
    int rv;

    if (!opts) opts = &defaults;
    if (err) *err = NULL;
    pthread_once(&key_once, tls_init_once);
    if (key_index < 0) {
        if (err) *err = xasprintf("OpenSSL: cannot allocate an ex_data index");
        return CC_ETLS;
    }
    int min = version_of(opts->min_version, TLS1_2_VERSION);
    int max = version_of(opts->max_version, TLS1_3_VERSION);
    if (min > max) {
        if (err) *err = xasprintf("TLS minimum version is above the maximum");
        return CC_ECONFIG;
    }

    ctx = cc_xcalloc(1, sizeof(*ctx));
    ctx->refs = 1;
    ctx->verify = !opts->insecure;
    ctx->verify_hint = cc_xstrdup(opts->verify_hint ? opts->verify_hint : CC_TLS_VERIFY_HINT);
    ctx->sessions_max = opts->session_cache_max ? opts->session_cache_max : TLS_SESSIONS_DEFAULT;
    ctx->sessions = cc_xcalloc(ctx->sessions_max, sizeof(*ctx->sessions));

    ERR_clear_error();
    ctx->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx->ssl_ctx)
        return ctx_fail(ctx, CC_ETLS, err,
                        xasprintf("cannot create a TLS context: %s", ssl_reason()));
    SSL_CTX *sc = ctx->ssl_ctx;
    SSL_CTX_set_app_data(sc, ctx);
    if (!SSL_CTX_set_min_proto_version(sc, min) || !SSL_CTX_set_max_proto_version(sc, max))
        return ctx_fail(ctx, CC_ETLS, err, xasprintf("cannot set TLS versions: %s", ssl_reason()));
    /* Free the record buffers of idle connections (about 34 KiB each otherwise), and read
     * whole chunks from our BIO rather than header then body. */
    SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(sc, 1);
    /* A TLS 1.2 server's renegotiation would make writes wait for reads; refuse it. */
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(sc, tls_on_new_session);

    if (ctx->verify) {
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
        if (opts->ca_file) {
            if (!SSL_CTX_load_verify_file(sc, opts->ca_file))
                return ctx_fail(
                    ctx, CC_ECONFIG, err,
                    xasprintf("cannot load CA file '%s': %s", opts->ca_file, ssl_reason()));
        } else if (!SSL_CTX_set_default_verify_paths(sc)) {
            return ctx_fail(ctx, CC_ETLS, err,
                            xasprintf("cannot load the system CA store: %s", ssl_reason()));
        }
    } else {
        SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
    }

    if (opts->cert_file) {
        const char *key = opts->key_file ? opts->key_file : opts->cert_file;
        if (SSL_CTX_use_certificate_chain_file(sc, opts->cert_file) != 1)
            return ctx_fail(ctx, CC_ECONFIG, err,
                            xasprintf("cannot load client certificate '%s': %s", opts->cert_file,
                                      ssl_reason()));
        if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1)
            return ctx_fail(ctx, CC_ECONFIG, err,
                            xasprintf("cannot load client key '%s': %s", key, ssl_reason()));
        if (SSL_CTX_check_private_key(sc) != 1)
            return ctx_fail(ctx, CC_ECONFIG, err,
                            xasprintf("client key '%s' does not match certificate '%s': %s", key,
                                      opts->cert_file, ssl_reason()));
    } else if (opts->key_file) {
        return ctx_fail(ctx, CC_ECONFIG, err,
                        xasprintf("client key '%s' given without a certificate", opts->key_file));
    }

    if (opts->alpn && (rv = ctx_set_alpn(ctx, opts->alpn, &msg)) < 0)
        return ctx_fail(ctx, rv, err, msg);

    *out = ctx;
    return 0;
}

void cc_tls_ctx_ref(struct cc_tls_ctx *ctx)
{
    ctx->refs++;
}

void cc_tls_ctx_unref(struct cc_tls_ctx *ctx)
{
    if (!ctx || --ctx->refs > 0) return;
    for (uint32_t i = 0; i < ctx->nsessions; i++)
        SSL_SESSION_free(ctx->sessions[i].sess);
    cc_free(ctx->sessions);
    if (ctx->alpn) {
        for (char **p = ctx->alpn; *p; p++)
            cc_free(*p);
        cc_free(ctx->alpn);
    }
    cc_free(ctx->verify_hint);
    SSL_CTX_free(ctx->ssl_ctx);
    cc_free(ctx);
}

struct cc_tls_cache_entry {
    char *key;
    struct cc_tls_ctx *ctx;
};

struct cc_tls_ctx *cc_tls_cache_get(struct cc_tls_cache *c, const char *key)
{
    for (uint32_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].key, key) == 0) {
            cc_tls_ctx_ref(c->v[i].ctx);
            return c->v[i].ctx;
        }
    }
    return NULL;
}

void cc_tls_cache_put(struct cc_tls_cache *c, const char *key, struct cc_tls_ctx *ctx)
{
    if (c->n >= 16) return; /* a few servers per run; past that, contexts are not shared */
    c->v = cc_xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    c->v[c->n].key = cc_xstrdup(key);
    c->v[c->n].ctx = ctx;
    c->n++;
    cc_tls_ctx_ref(ctx);
}

void cc_tls_cache_free(struct cc_tls_cache *c)
{
    for (uint32_t i = 0; i < c->n; i++) {
        cc_free(c->v[i].key);
        cc_tls_ctx_unref(c->v[i].ctx);
    }
    cc_free(c->v);
    c->v = NULL;
    c->n = 0;
}

/* ---- connections ---------------------------------------------------------------------------- */

static bool is_ip_literal(const char *s)
{
    struct in6_addr a6;
    struct in_addr a4;
    return uv_inet_pton(AF_INET, s, &a4) == 0 || uv_inet_pton(AF_INET6, s, &a6) == 0;
}

SSL *cc_tls_ssl_new(struct cc_tls_ctx *ctx, const char *server_name, const char *ip, uint16_t port)
{
    SSL *ssl = SSL_new(ctx->ssl_ctx);
    if (!ssl) return NULL;
    SSL_set_connect_state(ssl);

    const char *name = server_name && *server_name ? server_name : NULL;
    bool name_is_ip = name && is_ip_literal(name);
    /* RFC 6066 §3: SNI carries host names only, never IP literals. */
    if (name && !name_is_ip && !SSL_set_tlsext_host_name(ssl, name)) goto fail;
    if (ctx->verify) {
        if (name && !name_is_ip) {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (!SSL_set1_host(ssl, name)) goto fail;
        } else if (name || ip) {
            if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name ? name : ip)) goto fail;
        }
    }

    const char *who = name ? name : ip ? ip : "";
    uint64_t key = cc_hash(CC_HASH_INIT, who, strlen(who));
    key = cc_hash(key, &port, sizeof(port));
    if (!SSL_set_ex_data(ssl, key_index, (void *)(uintptr_t)key)) goto fail;
    SSL_SESSION *sess = tls_session_get(ctx, key);
    if (sess && !SSL_set_session(ssl, sess)) goto fail;

    cc_tls_ctx_ref(ctx);
    return ssl;
fail:
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

void cc_tls_ssl_free(SSL *ssl)
{
    if (!ssl) return;
    struct cc_tls_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    SSL_free(ssl);
    cc_tls_ctx_unref(ctx);
}

const char *cc_tls_alpn(const SSL *ssl)
{
    const unsigned char *proto;
    unsigned len;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    if (!proto || len == 0) return NULL;
    const struct cc_tls_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!ctx->alpn) return NULL;
    for (char **p = ctx->alpn; *p; p++)
        if (strlen(*p) == len && memcmp(*p, proto, len) == 0) return *p;
    return NULL;
}

int cc_tls_handshake_error(SSL *ssl, const char *peer, char **msg)
{
    const struct cc_tls_ctx *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    long vr = SSL_get_verify_result(ssl);
    if (ctx->verify && vr != X509_V_OK) {
        ERR_clear_error();
        *msg = xasprintf("TLS certificate verification failed for %s: %s %s", peer,
                         X509_verify_cert_error_string(vr), ctx->verify_hint);
        return CC_ECERT;
    }
    *msg = xasprintf("TLS handshake with %s failed: %s", peer, ssl_reason());
    return CC_ETLS;
}

void cc_tls_record_error(const char *peer, char **msg)
{
    /* the newest error: the failed call's own, even behind one left by other code */
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    *msg = xasprintf("TLS error from %s: %s", peer, reason ? reason : "unknown reason");
}
