/* SPDX-License-Identifier: MIT */
/*
 * test_pb.c: the protobuf codec (pb.c, pb_lua.c) on the descriptor set protoc makes of
 * tests/data/grpc/types.proto (the build passes its path): what the schema reads from it,
 * bytes worked out by hand from the encoding rules, round trips through Lua tables, every
 * truncation of a message and of the descriptor set, malformed input, and the errors a script
 * gets for tables that do not fit. tests/e2e/test_grpc.py checks the bytes against
 * python3-protobuf's.
 */
#include "proto/grpc/pb.h"
#include "proto/grpc/pb_lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const char *desc_path;
static char *desc;
static size_t desc_len;
static struct pb_schema *S;
static lua_State *L;

static int setup(void **state)
{
    (void)state;
    FILE *f = fopen(desc_path, "rb");
    assert_non_null(f);
    desc = malloc(1 << 20);
    desc_len = fread(desc, 1, 1 << 20, f);
    fclose(f);
    struct pb_bytes *files;
    int n = pb_descriptor_set_files(desc, desc_len, &files);
    assert_int_equal(n, 2); /* nested/common.proto, then types.proto */
    char err[512];
    int rc = pb_schema_new(&S, files, (size_t)n, err, sizeof(err));
    cc_free(files);
    if (rc != 0) fail_msg("%s", err);
    L = luaL_newstate();
    luaL_openlibs(L);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lua_close(L);
    pb_schema_free(S);
    free(desc);
    return 0;
}

static int32_t msg(const char *name)
{
    int32_t mi = pb_find_message(S, name, strlen(name));
    assert_true(mi >= 0);
    return mi;
}

static const struct pb_field *field(const char *m, const char *f)
{
    const struct pb_field *fd = pb_field_by_name(&S->msgs[msg(m)], f, strlen(f));
    assert_non_null(fd);
    return fd;
}

/* Encodes the Lua table expression |expr| as |type|; returns the bytes (static). */
static const char *encode(const char *type, const char *expr, size_t *len, int *rc, char *err)
{
    static struct pb_buf b;
    b.len = 0;
    char code[4096];
    snprintf(code, sizeof(code), "return %s", expr);
    if (luaL_dostring(L, code) != 0) fail_msg("%s", lua_tostring(L, -1));
    *rc = pb_lua_encode(L, -1, S, msg(type), &b, err, 512);
    lua_pop(L, 1);
    *len = b.len;
    return b.p ? b.p : "";
}

static void expect_bytes(const char *type, const char *expr, const char *want, size_t wl)
{
    size_t n;
    int rc;
    char err[512];
    const char *got = encode(type, expr, &n, &rc, err);
    if (rc != 0) fail_msg("%s: %s", expr, err);
    if (n != wl || memcmp(got, want, wl) != 0) {
        char hex[512] = "";
        for (size_t i = 0; i < n && i < 200; i++)
            snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex), "%02x ", (uint8_t)got[i]);
        fail_msg("%s -> %s", expr, hex);
    }
}

static void expect_error(const char *type, const char *expr, const char *want)
{
    size_t n;
    int rc;
    char err[512];
    encode(type, expr, &n, &rc, err);
    assert_int_equal(rc, -1);
    if (!strstr(err, want)) fail_msg("%s: '%s' lacks '%s'", expr, err, want);
    assert_int_equal(lua_gettop(L), 0);
}

/* Decodes |bytes| as |type| and runs the Lua |check| (a function of the table `t` returning
 * true). */
static void expect_decoded(const char *type, const char *bytes, size_t len, const char *check)
{
    char err[512];
    assert_int_equal(pb_lua_decode(L, S, msg(type), bytes, len, LUA_NOREF, err, sizeof(err)), 0);
    lua_setglobal(L, "t");
    char code[2048];
    snprintf(code, sizeof(code), "return %s", check);
    if (luaL_dostring(L, code) != 0) fail_msg("%s", lua_tostring(L, -1));
    if (!lua_toboolean(L, -1)) fail_msg("%s is false", check);
    lua_pop(L, 1);
}

/* ---- the schema ------------------------------------------------------------------------- */

static void test_schema(void **state)
{
    (void)state;
    assert_true(pb_find_message(S, ".cicada.types.Scalars", 21) >= 0);
    assert_true(pb_find_message(S, "cicada.types.Outer.Inner", 24) >= 0);
    assert_true(pb_find_message(S, "cicada.common.Point", 19) >= 0);
    assert_int_equal(pb_find_message(S, "cicada.types.Nope", 17), -1);
    assert_true(pb_find_enum(S, "cicada.types.Outer.Inner.Kind", 29) >= 0);
    int32_t color = pb_find_enum(S, "cicada.types.Color", 18);
    assert_true(color >= 0);
    assert_string_equal(pb_enum_name(&S->enums[color], -1), "NEGATIVE");
    assert_null(pb_enum_name(&S->enums[color], 9));

    /* proto3: implicit presence, packed lists; `optional` and oneof members have presence */
    assert_int_equal(field("cicada.types.Scalars", "f_int32")->flags, 0);
    assert_int_equal(field("cicada.types.Scalars", "f_optional")->flags, PB_F_PRESENCE);
    assert_int_equal(field("cicada.types.Scalars", "f_optional")->oneof, -1);
    assert_int_equal(field("cicada.types.Repeated", "ints")->flags, PB_F_REPEATED | PB_F_PACKED);
    assert_int_equal(field("cicada.types.Repeated", "unpacked")->flags, PB_F_REPEATED);
    assert_int_equal(field("cicada.types.Repeated", "names")->flags, PB_F_REPEATED);
    assert_int_equal(field("cicada.types.Maps", "counts")->flags, PB_F_REPEATED | PB_F_MAP);
    const struct pb_field *num = field("cicada.types.Choice", "number");
    assert_int_equal(num->oneof, 0);
    assert_true(num->flags & PB_F_PRESENCE);
    assert_string_equal(S->msgs[msg("cicada.types.Choice")].oneofs[0], "value");
    assert_int_equal(field("cicada.types.Tree", "left")->ref, msg("cicada.types.Tree"));
    /* proto2: presence everywhere, packed only when asked */
    assert_true(field("cicada.common.Legacy", "zero")->flags & PB_F_PRESENCE);
    assert_int_equal(field("cicada.common.Legacy", "plain")->flags, PB_F_REPEATED);
    assert_int_equal(field("cicada.common.Legacy", "packed")->flags, PB_F_REPEATED | PB_F_PACKED);
    /* fields are in number order and found by number */
    const struct pb_message *sc = &S->msgs[msg("cicada.types.Scalars")];
    for (uint32_t i = 0; i < sc->nfields; i++) {
        assert_int_equal(sc->fields[i].number, i + 1);
        assert_ptr_equal(pb_field_by_number(sc, i + 1), &sc->fields[i]);
    }
    assert_null(pb_field_by_number(sc, 99));
    assert_null(pb_field_by_number(sc, 100000));
}

static void test_schema_errors(void **state)
{
    (void)state;
    struct pb_bytes *files;
    int n = pb_descriptor_set_files(desc, desc_len, &files);
    char err[512];
    struct pb_schema *s = NULL;
    /* types.proto without the file it imports */
    assert_int_equal(pb_schema_new(&s, files + 1, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not in the descriptor set"));
    assert_non_null(strstr(err, "--include_imports"));
    /* a file given twice is read once */
    struct pb_bytes twice[3] = {files[0], files[0], files[1]};
    assert_int_equal(pb_schema_new(&s, twice, 3, err, sizeof(err)), 0);
    pb_schema_free(s);
    /* every truncation of each file: a schema or an error, never a crash or a leak */
    for (int f = 0; f < n; f++)
        for (size_t cut = 0; cut < files[f].len; cut++) {
            struct pb_bytes one[2] = {files[0], {files[f].p, cut}};
            s = NULL;
            if (pb_schema_new(&s, one, 2, err, sizeof(err)) == 0) pb_schema_free(s);
        }
    cc_free(files);
    assert_int_equal(pb_descriptor_set_files("\x0a\x05xx", 4, &files), -1);
    assert_int_equal(pb_descriptor_set_files("", 0, &files), 0);
    cc_free(files);
}

/* ---- encoding --------------------------------------------------------------------------- */

#define B(s) s, sizeof(s) - 1

static void test_encode_bytes(void **state)
{
    (void)state;
    const char *T = "cicada.types.Scalars";
    expect_bytes(T, "{}", B(""));
    /* proto3 leaves defaults out; `optional` keeps them */
    expect_bytes(T, "{ f_int32 = 0, f_string = '', f_bool = false, f_color = 'COLOR_UNSPECIFIED' }",
                 B(""));
    expect_bytes(T, "{ f_optional = 0 }", B("\x88\x01\x00"));
    expect_bytes(T, "{ f_int32 = 150 }", B("\x18\x96\x01"));
    expect_bytes(T, "{ f_int32 = -1 }", B("\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"));
    expect_bytes(T, "{ f_sint32 = -1, f_sint64 = 1 }", B("\x38\x01\x40\x02"));
    expect_bytes(T, "{ f_uint64 = '18446744073709551615' }",
                 B("\x30\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"));
    expect_bytes(T, "{ f_fixed32 = 1, f_sfixed64 = -2 }",
                 B("\x4d\x01\x00\x00\x00\x61\xfe\xff\xff\xff\xff\xff\xff\xff"));
    expect_bytes(T, "{ f_double = 1.5, f_float = -2 }",
                 B("\x09\x00\x00\x00\x00\x00\x00\xf8\x3f\x15\x00\x00\x00\xc0"));
    expect_bytes(T, "{ f_string = 'hi', f_bytes = '\\0', f_color = 'GREEN', f_bool = true }",
                 B("\x68\x01\x72\x02hi\x7a\x01\x00\x80\x01\x02"));
    expect_bytes(T, "{ f_color = -1 }", B("\x80\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"));
    /* lists: packed, unpacked; nested messages and their lengths */
    const char *R = "cicada.types.Repeated";
    expect_bytes(R, "{ ints = { 1, 150 }, unpacked = { 1, 2 } }",
                 B("\x0a\x03\x01\x96\x01\x10\x01\x10\x02"));
    expect_bytes(R, "{ points = { { x = 1 }, {} }, names = { 'a' } }",
                 B("\x42\x01\x61\x52\x02\x08\x01\x52\x00"));
    /* a nested message of 200 bytes: its length takes two bytes */
    char want[300];
    memcpy(want, "\x42\xc8\x01", 3);
    memset(want + 3, 'y', 200);
    expect_bytes(R, "{ names = { string.rep('y', 200) } }", want, 203);
    /* maps, sorted by key */
    expect_bytes("cicada.types.Maps", "{ counts = { b = 2, a = 1 } }",
                 B("\x0a\x05\x0a\x01\x61\x10\x01\x0a\x05\x0a\x01\x62\x10\x02"));
    expect_bytes("cicada.types.Maps", "{ names = { [2] = '', [-1] = 'm' } }",
                 B("\x12\x0e\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x12\x01m\x12\x04\x08\x02"
                   "\x12\x00"));
    /* oneof: the member set, even at its default */
    expect_bytes("cicada.types.Choice", "{ number = 0 }", B("\x10\x00"));
    /* proto2: set fields are written, lists unpacked unless asked */
    expect_bytes("cicada.common.Legacy", "{ id = '', zero = 0, plain = { 1 }, packed = { 1, 2 } }",
                 B("\x0a\x00\x10\x00\x18\x01\x22\x02\x01\x02"));
    /* 64-bit cdata */
    expect_bytes(T, "{ f_int64 = -2LL, f_uint64 = 3ULL }",
                 B("\x20\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01\x30\x03"));
}

static void test_encode_errors(void **state)
{
    (void)state;
    const char *T = "cicada.types.Scalars";
    expect_error(T, "{ f_int32 = 1.5 }",
                 "field 'f_int32' of cicada.types.Scalars: 1.5 is not an integer");
    expect_error(T, "{ f_int32 = 2^31 }", "out of range for int32");
    expect_error(T, "{ f_uint32 = -1 }", "is negative");
    expect_error(T, "{ f_int64 = '12x' }", "is not an integer");
    expect_error(T, "{ f_uint64 = '18446744073709551616' }", "is not an integer in range");
    expect_error(T, "{ f_string = 5 }", "expected a string, got number");
    expect_error(T, "{ f_bool = 1 }", "expected a boolean, got number");
    expect_error(T, "{ f_color = 'BLUE' }", "'BLUE' is not a value of cicada.types.Color");
    expect_error(T, "{ f_double = 'x' }", "expected a number, got string");
    expect_error(T, "{ nope = 1 }", "no field named 'nope'");
    expect_error(T, "{ 1 }", "a number key in a message table");
    expect_error("cicada.types.Repeated", "{ ints = { 1, 'a' } }", "field 'ints[2]'");
    expect_error("cicada.types.Repeated", "{ ints = { a = 1 } }", "expected a list");
    expect_error(
        "cicada.types.Repeated", "{ points = { { z = 1 } } }",
        "field 'points[1]' of cicada.types.Repeated: no field named 'z' in cicada.common.Point");
    expect_error("cicada.types.Tree", "{ left = { left = { name = 1 } } }",
                 "field 'left.left.name'");
    expect_error("cicada.types.Choice", "{ text = 'a', color = 'RED' }",
                 "oneof value: both text and color are set");
    expect_error("cicada.types.Maps", "{ names = { x = 'a' } }", "'x' is not an integer");
    expect_error("cicada.types.Maps", "{ counts = { [1] = 1 } }", "a map key must be a string");
    expect_error("cicada.types.Maps", "{ points = { [1] = 5 } }",
                 "expected a table (message cicada.common.Point)");
    expect_error("cicada.types.Everything", "{ scalars = 'x' }", "expected a table");
    /* a table nested deeper than the limit */
    expect_error("cicada.types.Tree",
                 "(function() local t = {} for i = 1, 150 do t = { left = t } end return t end)()",
                 "nested too deep");
}

/* ---- decoding --------------------------------------------------------------------------- */

static void test_decode(void **state)
{
    (void)state;
    const char *T = "cicada.types.Scalars";
    expect_decoded(T, B("\x18\x96\x01"), "t.f_int32 == 150 and t.f_string == nil");
    expect_decoded(T, B("\x30\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
                   "t.f_uint64 == '18446744073709551615'");
    expect_decoded(T, B("\x20\x80\x80\x80\x80\x80\x80\x80\x10"), "t.f_int64 == 2^53");
    expect_decoded(T, B("\x20\x81\x80\x80\x80\x80\x80\x80\x10"), "t.f_int64 == '9007199254740993'");
    expect_decoded(T, B("\x38\x01\x40\x03"), "t.f_sint32 == -1 and t.f_sint64 == -2");
    expect_decoded(T, B("\x80\x01\x07"), "t.f_color == 7"); /* a value with no name */
    /* unknown fields and fields of another wire type are skipped */
    expect_decoded(T, B("\xf8\x07\x01\x18\x05\x1a\x01x\xfb\x07\x08\x01\xfc\x07"), "t.f_int32 == 5");
    /* packed and unpacked are both read, whatever the schema says */
    expect_decoded("cicada.types.Repeated", B("\x08\x01\x0a\x02\x02\x03\x12\x02\x04\x05"),
                   "#t.ints == 3 and t.ints[3] == 3 and #t.unpacked == 2 and t.unpacked[2] == 5");
    /* maps: the last value for a key wins; a missing key or value is the default */
    expect_decoded("cicada.types.Maps",
                   B("\x0a\x05\x0a\x01\x61\x10\x01\x0a\x05\x0a\x01\x61\x10\x02"
                     "\x0a\x00\x1a\x02\x08\x07"),
                   "t.counts.a == 2 and t.counts[''] == 0 and t.points[7].x == nil");
    /* a oneof keeps the last member set */
    expect_decoded("cicada.types.Choice", B("\x10\x05\x1a\x01x"),
                   "t.text == 'x' and t.number == nil");
}

static void test_decode_malformed(void **state)
{
    (void)state;
    char err[512];
    static const struct {
        const char *b;
        size_t n;
        const char *what;
    } bad[] = {
        {B("\x18"), "truncated varint"},
        {B("\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), "truncated varint"},
        {B("\x72\x05hi"), "runs past the end"},
        {B("\x07"), "bad field key"},     /* wire type 7 */
        {B("\x00\x01"), "bad field key"}, /* field 0 */
        {B("\x4d\x01\x00"), "truncated fixed32"},
        {B("\x0c"), "runs past the end"}, /* an end of group nobody opened */
    };
    int32_t sc = msg("cicada.types.Scalars");
    for (size_t i = 0; i < CC_ARRAY_LEN(bad); i++) {
        err[0] = 0;
        assert_int_equal(pb_lua_decode(L, S, sc, bad[i].b, bad[i].n, LUA_NOREF, err, sizeof(err)),
                         -1);
        assert_int_equal(lua_gettop(L), 0);
        assert_non_null(strstr(err, "malformed cicada.types.Scalars"));
        if (!strstr(err, bad[i].what)) fail_msg("%s lacks %s", err, bad[i].what);
    }
    /* nested deeper than the limit: Tree.left, 150 times, built from the inside out */
    static char deep[1024];
    size_t n = 0, start = sizeof(deep);
    for (int i = 0; i < 150; i++) {
        size_t inner = n;
        uint8_t v[2];
        size_t vl = inner < 128 ? 1 : 2;
        v[0] = (uint8_t)(inner < 128 ? inner : (inner & 0x7f) | 0x80);
        v[1] = (uint8_t)(inner >> 7);
        start -= vl + 1;
        deep[start] = 0x12;
        memcpy(deep + start + 1, v, vl);
        n += vl + 1;
    }
    int32_t tree = msg("cicada.types.Tree");
    assert_int_equal(pb_lua_decode(L, S, tree, deep + start, n, LUA_NOREF, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nested too deep"));
    assert_int_equal(lua_gettop(L), 0);
    /* every truncation of a rich message decodes or fails cleanly */
    size_t len;
    int rc;
    const char *full = encode("cicada.types.Everything",
                              "{ scalars = { f_int32 = -5, f_string = 'abc', f_double = 2 },"
                              "  repeated = { ints = { 1, 2, 300 }, points = { { x = 1 } } },"
                              "  maps = { counts = { a = 1 }, points = { [3] = { y = 4 } } },"
                              "  choice = { point = { x = 9 } }, tree = { left = { name = 'l' } },"
                              "  legacy = { id = 'z', packed = { 5 } } }",
                              &len, &rc, err);
    assert_int_equal(rc, 0);
    char copy[1024];
    assert_true(len < sizeof(copy));
    memcpy(copy, full, len);
    int32_t ev = msg("cicada.types.Everything");
    for (size_t cut = 0; cut <= len; cut++) {
        int r = pb_lua_decode(L, S, ev, copy, cut, LUA_NOREF, err, sizeof(err));
        assert_int_equal(lua_gettop(L), r == 0 ? 1 : 0);
        lua_settop(L, 0);
    }
    /* and the whole decodes to what was encoded */
    expect_decoded("cicada.types.Everything", copy, len,
                   "t.scalars.f_int32 == -5 and t.repeated.ints[3] == 300 and "
                   "t.maps.points[3].y == 4 and t.choice.point.x == 9 and t.tree.left.name == 'l' "
                   "and t.legacy.packed[1] == 5");
}

/* Decoded messages read absent fields as their defaults through their metatable. */
static int l_decode(lua_State *Ls)
{
    size_t n;
    const char *p = luaL_checklstring(Ls, 2, &n);
    char err[512];
    int mts = (int)lua_tointeger(Ls, lua_upvalueindex(1));
    const char *type = luaL_checkstring(Ls, 1);
    if (pb_lua_decode(Ls, S, msg(type), p, n, mts, err, sizeof(err)) != 0)
        return luaL_error(Ls, "%s", err);
    return 1;
}

static void test_defaults(void **state)
{
    (void)state;
    lua_newuserdata(L, 1); /* stands for the schema's userdata */
    int mts = pb_lua_metatables(L, -1, S);
    lua_pop(L, 1);
    lua_pushinteger(L, mts);
    lua_pushcclosure(L, l_decode, 1);
    lua_setglobal(L, "decode");
    const char *code =
        "local t = decode('cicada.types.Scalars', '')\n"
        "assert(t.f_int32 == 0 and t.f_string == '' and t.f_bytes == '' and t.f_bool == false)\n"
        "assert(t.f_color == 'COLOR_UNSPECIFIED' and t.f_optional == nil and t.f_int64 == 0)\n"
        "assert(t.nope == nil and next(t) == nil)\n"
        "local r = decode('cicada.types.Repeated', '')\n"
        "assert(#r.ints == 0) r.ints[1] = 5 assert(rawget(r, 'ints')[1] == 5)\n"
        "local c = decode('cicada.types.Choice', '')\n"
        "assert(c.number == nil and c.point == nil and c.label == '')\n"
        "local e = decode('cicada.types.Everything', '')\n"
        "assert(e.scalars == nil)\n"
        "local m = decode('cicada.types.Maps', '\\26\\2\\8\\1')\n"
        "assert(m.points[1].x == nil and getmetatable(m.points[1]) ~= nil)\n"
        "return true";
    if (luaL_dostring(L, code) != 0) fail_msg("%s", lua_tostring(L, -1));
    lua_settop(L, 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_pb types.desc\n");
        return 2;
    }
    desc_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema),       cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_encode_bytes), cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_decode),       cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
