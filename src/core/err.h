/* SPDX-License-Identifier: MIT */
/*
 * err.h: cicada's error codes and their text.
 *
 * Every function that can fail returns 0 or a negative code. System and libuv errors pass
 * through unchanged (libuv's codes are -errno on Unix, UV_EOF, and the UV_EAI_* band from
 * -3000), so a code from uv_*() can be returned as it is. cicada's own codes live in the band
 * CC_ERR_FIRST..CC_ERR_LAST (-1000 to -1999), which libuv does not use.
 */
#ifndef CC_ERR_H
#define CC_ERR_H

#include <stdbool.h>

enum {
    CC_ERR_FIRST = -1000,
    CC_ETLS = -1001,              /* TLS handshake or record-layer failure */
    CC_ECERT = -1002,             /* the server's certificate did not verify */
    CC_ETIMEDOUT_CONNECT = -1003, /* TCP connect plus TLS handshake ran past their timeout */
    CC_ECLOSED = -1004,           /* the connection is closed, ended or not yet open */
    CC_ETOOBIG = -1005,           /* data from a peer exceeded a buffer's hard cap */
    CC_EPROTO = -1006,            /* a peer broke its protocol */
    CC_ECONFIG = -1007,           /* bad options: a file that will not load, a bad value */
    CC_ERR_LAST = -1999,
};

/* True when |err| is one of cicada's own codes. */
static inline bool cc_err_is_ours(int err)
{
    return err <= CC_ERR_FIRST && err >= CC_ERR_LAST;
}

/*
 * A short lower-case description of |err| ("connection refused", "TLS certificate
 * verification failed"): cicada's codes, libuv's and errno values alike, 0 included. The
 * string is static; it never needs freeing and stays valid for the life of the program.
 */
const char *cc_strerror(int err);

#endif
