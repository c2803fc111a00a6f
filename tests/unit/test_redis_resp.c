/* SPDX-License-Identifier: MIT */
/*
 * test_redis_resp.c: the Redis codec: commands as RESP, and replies parsed into the arena fed
 * whole, one byte at a time, split at every position and in random chunks; the caps on what a
 * peer announces; protocol errors.
 */
#include "proto/redis/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- a canonical text for replies, to compare parses ------------------------------------------
 */

struct out {
    char buf[65536];
    size_t len;
};

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && o->len + (size_t)n < sizeof(o->buf));
    o->len += (size_t)n;
}

static void show(struct out *o, const struct redis_node *n)
{
    if (!n) {
        put(o, "(unset)");
        return;
    }
    switch (n->type) {
    case REDIS_REPLY_STRING: {
        /* the length, the first bytes in hex, and a hash of them all */
        put(o, "s%zu:", n->n);
        for (size_t i = 0; i < n->n && i < 8; i++)
            put(o, "%02x", (unsigned char)n->u.str[i]);
        if (n->n > 8) put(o, "#%016llx", (unsigned long long)cc_hash(CC_HASH_INIT, n->u.str, n->n));
        break;
    }
    case REDIS_REPLY_STATUS:
        put(o, "+%s", n->u.str);
        break;
    case REDIS_REPLY_ERROR:
        put(o, "-%s", n->u.str);
        break;
    case REDIS_REPLY_INTEGER:
        put(o, ":%lld", n->u.integer);
        break;
    case REDIS_REPLY_NIL:
        put(o, "nil");
        break;
    case REDIS_REPLY_ARRAY:
        put(o, "[");
        for (size_t i = 0; i < n->n; i++) {
            if (i) put(o, ",");
            show(o, n->u.elem[i]);
        }
        put(o, "]");
        break;
    default:
        put(o, "?");
    }
}

/* Parses |s| given in the chunks |cuts| (ascending split points, |ncuts| of them); returns the
 * replies' text, or "ERR:<message>" appended at the failure. */
static void parse_chunks(const char *s, size_t len, const size_t *cuts, size_t ncuts, size_t max,
                         struct out *o)
{
    struct redis_parser p;
    redis_parser_init(&p, max);
    size_t from = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : len;
        if (to < from) to = from;
        if (redis_parser_feed(&p, s + from, to - from) != 0) {
            put(o, "ERR:%s", p.error);
            goto done;
        }
        from = to;
        for (;;) {
            struct redis_node *n;
            int rc = redis_parser_next(&p, &n);
            if (rc == 0) break;
            if (rc < 0) {
                put(o, "ERR:%s", p.error);
                goto done;
            }
            show(o, n);
            put(o, ";");
            redis_parser_reset(&p); /* as the client does between replies */
        }
    }
done:
    redis_parser_release(&p);
}

static void parse_whole(const char *s, size_t len, size_t max, struct out *o)
{
    parse_chunks(s, len, NULL, 0, max, o);
}

/* Every way of cutting |s| in two, one byte at a time, and random chunkings: all must give
 * what the whole does. */
static void check_every_split(const char *s, size_t len, const char *want)
{
    struct out whole = {0};
    parse_whole(s, len, 0, &whole);
    assert_string_equal(whole.buf, want);
    for (size_t i = 0; i <= len; i++) {
        struct out o = {0};
        size_t cut = i;
        parse_chunks(s, len, &cut, 1, 0, &o);
        if (strcmp(o.buf, want) != 0) fail_msg("split at %zu: got %s, want %s", i, o.buf, want);
    }
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    struct out bytes = {0};
    parse_chunks(s, len, cuts, len, 0, &bytes);
    assert_string_equal(bytes.buf, want);
    srand(7);
    for (int round = 0; round < 200; round++) {
        size_t n = 0, at = 0;
        while (at < len) {
            at += 1 + (size_t)rand() % 9;
            if (at < len) cuts[n++] = at;
        }
        struct out o = {0};
        parse_chunks(s, len, cuts, n, 0, &o);
        assert_string_equal(o.buf, want);
    }
    free(cuts);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_encode(void **state)
{
    (void)state;
    struct redis_buf b = {0};
    resp_begin(&b, 3);
    resp_arg(&b, "SET", 3);
    resp_arg(&b, "key", 3);
    resp_arg(&b, "a\r\nb\0c", 6);
    const char want[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$6\r\na\r\nb\0c\r\n";
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.p, want, b.len);
    resp_begin(&b, 1);
    resp_arg(&b, "", 0);
    assert_memory_equal(b.p + sizeof(want) - 1, "*1\r\n$0\r\n\r\n", 10);
    redis_buf_free(&b);
}

static void test_reply_kinds(void **state)
{
    (void)state;
    const char s[] = "+OK\r\n"
                     "-ERR unknown command 'NOPE'\r\n"
                     ":42\r\n"
                     ":-7\r\n"
                     "$5\r\nhello\r\n"
                     "$0\r\n\r\n"
                     "$-1\r\n"
                     "$4\r\na\r\nb\r\n"
                     "*0\r\n"
                     "*-1\r\n"
                     "*3\r\n$1\r\na\r\n$-1\r\n:1\r\n"
                     "*2\r\n*2\r\n+x\r\n-E\r\n*1\r\n*0\r\n";
    const char *want = "+OK;"
                       "-ERR unknown command 'NOPE';"
                       ":42;"
                       ":-7;"
                       "s5:68656c6c6f;"
                       "s0:;"
                       "nil;"
                       "s4:610d0a62;"
                       "[];"
                       "nil;"
                       "[s1:61,nil,:1];"
                       "[[+x,-E],[[]]];";
    check_every_split(s, sizeof(s) - 1, want);
}

static void test_binary_and_big(void **state)
{
    (void)state;
    /* a bulk string larger than an arena block, with every byte value */
    size_t n = 70000;
    char *s = malloc(n + 64);
    int h = sprintf(s, "$%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        s[h + i] = (char)(i * 7);
    memcpy(s + h + n, "\r\n:1\r\n", 6);
    struct out o = {0};
    parse_whole(s, (size_t)h + n + 6, 0, &o);
    assert_memory_equal(o.buf, "s70000:00070e151c232a31#", 24);
    assert_non_null(strstr(o.buf, ";:1;"));
    /* and in pieces of 1000 */
    size_t cuts[80], nc = 0;
    for (size_t at = 1000; at < (size_t)h + n + 6; at += 1000)
        cuts[nc++] = at;
    struct out o2 = {0};
    parse_chunks(s, (size_t)h + n + 6, cuts, nc, 0, &o2);
    assert_string_equal(o.buf, o2.buf);
    free(s);
}

static void test_caps(void **state)
{
    (void)state;
    struct out o = {0};
    /* an array announcing more elements than the cap can hold: refused before allocating */
    parse_whole("*100000000\r\n", 12, 4096, &o);
    assert_non_null(strstr(o.buf, "ERR:a reply exceeds max_reply (4096 bytes)"));
    /* a bulk string bigger than the cap, arriving */
    char big[6000];
    int h = sprintf(big, "$5000\r\n");
    memset(big + h, 'x', 5000);
    memcpy(big + h + 5000, "\r\n", 2);
    struct out o2 = {0};
    parse_whole(big, (size_t)h + 5002, 4096, &o2);
    assert_non_null(strstr(o2.buf, "ERR:a reply exceeds max_reply"));
    /* a line that never ends */
    memset(big, 'a', sizeof(big));
    big[0] = '+';
    struct out o3 = {0};
    parse_whole(big, sizeof(big), 4096, &o3);
    assert_non_null(strstr(o3.buf, "ERR:a reply exceeds max_reply"));
    /* many small replies each under the cap are fine: the arena is reset between them */
    struct redis_buf b = {0};
    for (int i = 0; i < 2000; i++)
        redis_buf_append(&b, "$3\r\nabc\r\n", 9);
    struct out o4 = {0};
    parse_whole(b.p, b.len, 4096, &o4);
    assert_null(strstr(o4.buf, "ERR"));
    redis_buf_free(&b);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    struct out o = {0};
    parse_whole("!garbage\r\n", 10, 0, &o);
    assert_non_null(
        strstr(o.buf, "ERR:protocol error: Protocol error, got \"!\" as reply type byte"));
    struct out o2 = {0};
    parse_whole(":12x\r\n", 6, 0, &o2);
    assert_non_null(strstr(o2.buf, "ERR:protocol error: Bad integer value"));
    struct out o3 = {0};
    parse_whole("$-5\r\n", 5, 0, &o3);
    assert_non_null(strstr(o3.buf, "ERR:protocol error: Bulk string length out of range"));
    struct out o4 = {0};
    parse_whole("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", 40, 0, &o4);
    assert_non_null(strstr(o4.buf, "ERR:protocol error: No support for nested multi bulk"));
    /* a good reply before the garbage is still delivered */
    struct out o5 = {0};
    parse_whole("+OK\r\n%3\r\n", 9, 0, &o5);
    assert_non_null(strstr(o5.buf, "+OK;ERR:protocol error"));
}

static void test_restart_and_bytes(void **state)
{
    (void)state;
    struct redis_parser p;
    redis_parser_init(&p, 0);
    assert_int_equal(redis_parser_feed(&p, "!x\r\n", 4), 0);
    struct redis_node *n;
    assert_int_equal(redis_parser_next(&p, &n), -1);
    assert_int_equal(redis_parser_next(&p, &n), -1); /* stays failed */
    redis_parser_restart(&p);
    assert_int_equal(redis_parser_feed(&p, "*2\r\n$3\r\nabc\r\n+OK\r\n", 18), 0);
    assert_int_equal(redis_parser_next(&p, &n), 1);
    assert_int_equal(redis_node_bytes(n), 5);
    redis_parser_reset(&p);
    assert_int_equal(redis_parser_next(&p, &n), 0);
    redis_parser_release(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode),          cmocka_unit_test(test_reply_kinds),
        cmocka_unit_test(test_binary_and_big),  cmocka_unit_test(test_caps),
        cmocka_unit_test(test_protocol_errors), cmocka_unit_test(test_restart_and_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
