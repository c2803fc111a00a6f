/* SPDX-License-Identifier: MIT */
/*
 * tls.h: client TLS contexts (OpenSSL 3): trust, client certificate, ALPN, session cache.
 *
 * A context holds what connections to one kind of server share: the trust store, the client
 * certificate, the ALPN list, the allowed versions, and a client session cache keyed by
 * "server name:port" so that a new connection to a server resumes the last session it got
 * from it (TLS 1.2 session IDs or tickets, TLS 1.3 tickets). A context belongs to one thread
 * (its session cache has no lock): each worker makes its own. It is reference counted; every
 * connection that uses it holds a reference until it is closed.
 *
 * The transport itself (handshake, records over libuv) is in core/conn.c.
 */
#ifndef CC_TLS_H
#define CC_TLS_H

#include "core/common.h"

struct ssl_ctx_st;        /* OpenSSL's SSL_CTX */
struct ssl_st;            /* OpenSSL's SSL */
struct tls_session_entry; /* private */

/*
 * What the verification failure message ends with. A protocol layer whose users turn
 * verification off some other way passes its own text in cc_tls_opts.verify_hint.
 */
#define CC_TLS_VERIFY_HINT "(set insecure = true / --insecure to skip verification)"

enum cc_tls_version { CC_TLS_DEFAULT = 0, CC_TLS_1_2 = 12, CC_TLS_1_3 = 13 };

/* Zero-initialised options are the safe defaults: verify against the system CAs, TLS 1.2-1.3. */
struct cc_tls_opts {
    bool insecure;                   /* skip certificate and host name verification */
    const char *ca_file;             /* PEM file of trusted CAs used instead of the system store */
    const char *cert_file;           /* client certificate chain (PEM), or NULL */
    const char *key_file;            /* its private key (PEM); NULL: the key is in |cert_file| */
    const char *const *alpn;         /* NULL-terminated protocols in preference order, or NULL */
    enum cc_tls_version min_version; /* default TLS 1.2 */
    enum cc_tls_version max_version; /* default TLS 1.3 */
    uint32_t session_cache_max;      /* servers remembered for resumption; 0: 256 */
    const char *verify_hint;         /* NULL: CC_TLS_VERIFY_HINT */
};

/* Fields are private. */
struct cc_tls_ctx {
    struct ssl_ctx_st *ssl_ctx;
    uint32_t refs;
    bool verify;
    char *verify_hint;
    char **alpn; /* NULL-terminated copy of the offered protocols */
    struct tls_session_entry *sessions;
    uint32_t nsessions, sessions_max;
    uint64_t session_clock; /* orders the sessions by last use */
};

/*
 * Creates a context with one reference. Every option string is copied and files are read
 * now. Returns 0 and sets *|out|, or CC_ECONFIG with a message in *|err| (the caller frees it
 * with cc_free) when a file cannot be read, a key does not match its certificate, an ALPN
 * name is empty or over 255 bytes, or the versions are out of order; CC_ETLS when OpenSSL
 * fails otherwise (also with a message).
 */
int cc_tls_ctx_new(struct cc_tls_ctx **out, const struct cc_tls_opts *opts, char **err);
void cc_tls_ctx_ref(struct cc_tls_ctx *ctx);
/* Drops a reference; the last one frees the context and its cached sessions. NULL is fine. */
void cc_tls_ctx_unref(struct cc_tls_ctx *ctx);

/*
 * A few contexts of one worker kept by a key the caller composes from the settings that make
 * them (files, verification, a name), so that clients with the same settings share one and the
 * trust store is read once. Not shared between threads.
 */
struct cc_tls_cache {
    struct cc_tls_cache_entry *v;
    uint32_t n;
};
/* The context cached under |key|, with a reference for the caller, or NULL. */
struct cc_tls_ctx *cc_tls_cache_get(struct cc_tls_cache *c, const char *key);
/* Keeps a reference to |ctx| under |key|; past 16 keys nothing more is kept. */
void cc_tls_cache_put(struct cc_tls_cache *c, const char *key, struct cc_tls_ctx *ctx);
/* Drops every reference the cache holds. */
void cc_tls_cache_free(struct cc_tls_cache *c);

/* ---- for core/conn.c ------------------------------------------------------------------------ */

/*
 * A new client-mode SSL object for a connection to |server_name| at |ip| (text form) and
 * |port|. |server_name| is sent as SNI and is the name the certificate must carry; when it is
 * NULL or an IP literal no SNI is sent and the certificate must carry that address (|ip| when
 * |server_name| is NULL). The session cached for the server is set for resumption, and new
 * sessions the server issues on this connection replace it. The SSL object holds a reference
 * to |ctx| until cc_tls_ssl_free(). Returns NULL when OpenSSL fails (out of memory).
 */
struct ssl_st *cc_tls_ssl_new(struct cc_tls_ctx *ctx, const char *server_name, const char *ip,
                              uint16_t port);
/* Frees |ssl| (its BIO included) and drops its reference to the context. NULL is fine. */
void cc_tls_ssl_free(struct ssl_st *ssl);

/* The protocol ALPN selected on |ssl|, as one of the context's strings, or NULL. */
const char *cc_tls_alpn(const struct ssl_st *ssl);

/*
 * Explains why the handshake on |ssl| failed, after SSL_do_handshake() reported
 * SSL_ERROR_SSL or SSL_ERROR_SYSCALL, from the thread's OpenSSL error queue (which it clears)
 * and the verification result. |peer| names the server in the text. Returns CC_ECERT (the
 * message ends with the context's verify hint) or CC_ETLS, and sets *|msg| (caller frees).
 */
int cc_tls_handshake_error(struct ssl_st *ssl, const char *peer, char **msg);

/* The reason for a failure after the handshake: the newest entry of the error queue (which it
 * clears). */
void cc_tls_record_error(const char *peer, char **msg);

#endif
