/* SPDX-License-Identifier: MIT */
/* err.c: the text of cicada's, libuv's and the system's error codes; see err.h. */
#define _GNU_SOURCE /* strerrordesc_np */
#include "core/err.h"
#include "core/common.h"

#include <string.h>
#include <uv.h>

static const char *const own_messages[] = {
    [-CC_ETLS - 1000] = "TLS error",
    [-CC_ECERT - 1000] = "TLS certificate verification failed",
    [-CC_ETIMEDOUT_CONNECT - 1000] = "connect timed out",
    [-CC_ECLOSED - 1000] = "connection closed",
    [-CC_ETOOBIG - 1000] = "message too big",
    [-CC_EPROTO - 1000] = "protocol error",
    [-CC_ECONFIG - 1000] = "invalid configuration",
};

const char *cc_strerror(int err)
{
    if (err == 0) return "success";
    if (cc_err_is_ours(err)) {
        unsigned i = (unsigned)(-err - 1000);
        if (i < CC_ARRAY_LEN(own_messages) && own_messages[i]) return own_messages[i];
        return "unknown cicada error";
    }
    /*
     * uv_strerror() returns a static string for the codes it knows but allocates (and leaks)
     * one for the others, so ask uv_err_name_r() first: it writes a fixed prefix for those.
     */
    char name[48];
    uv_err_name_r(err, name, sizeof(name));
    if (strncmp(name, "Unknown system error", 20) != 0) return uv_strerror(err);
    if (err < 0) {
        const char *s = strerrordesc_np(-err);
        if (s) return s;
    }
    return "unknown error";
}
