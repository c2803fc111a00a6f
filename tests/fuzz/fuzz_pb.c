/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pb.c: the protobuf codec on arbitrary input: a descriptor set (the schema reader of
 * pb.c) and a message decoded with it into Lua tables (pb_lua.c). What decodes is encoded,
 * decoded and encoded again: the two encodings must be the same bytes (encoding is
 * deterministic, and what one decode/encode round lets through, the next keeps).
 *
 * Input: [descriptor length, 2 bytes little-endian] [FileDescriptorSet] [message index]
 * [message bytes]. The seeds (corpus/pb) hold tests/data/grpc/types.proto's descriptor set and
 * messages of it.
 */
#include "proto/grpc/pb.h"
#include "proto/grpc/pb_lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;

static void encode_decoded(const struct pb_schema *s, int32_t mi, const char *p, size_t n,
                           struct pb_buf *out, bool *ok)
{
    char err[512];
    *ok = false;
    out->len = 0;
    if (pb_lua_decode(L, s, mi, p, n, LUA_NOREF, err, sizeof(err)) != 0) return;
    *ok = pb_lua_encode(L, -1, s, mi, out, err, sizeof(err)) == 0;
    lua_settop(L, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) L = luaL_newstate();
    if (size < 3) return 0;
    size_t dl = (size_t)data[0] | (size_t)data[1] << 8;
    if (dl > size - 2) return 0;
    const char *desc = (const char *)data + 2;
    struct pb_bytes *files = NULL;
    int n = pb_descriptor_set_files(desc, dl, &files);
    if (n <= 0) {
        cc_free(files);
        return 0;
    }
    struct pb_schema *s = NULL;
    char err[512];
    int rc = pb_schema_new(&s, files, (size_t)n, err, sizeof(err));
    cc_free(files);
    if (rc != 0 || s->nmsgs == 0) {
        pb_schema_free(s);
        return 0;
    }
    size_t off = 2 + dl;
    int32_t mi = off < size ? (int32_t)(data[off++] % s->nmsgs) : 0;
    const char *msg = (const char *)data + off;
    size_t ml = size - off;
    struct pb_buf e1 = {0}, e2 = {0};
    bool ok1, ok2;
    encode_decoded(s, mi, msg, ml, &e1, &ok1);
    if (ok1) {
        encode_decoded(s, mi, e1.p ? e1.p : "", e1.len, &e2, &ok2);
        if (!ok2 || e1.len != e2.len || (e1.len && memcmp(e1.p, e2.p, e1.len) != 0)) abort();
    }
    cc_free(e1.p);
    cc_free(e2.p);
    pb_schema_free(s);
    return 0;
}
