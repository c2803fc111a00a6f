/* SPDX-License-Identifier: MIT */
/*
 * test_openai.c: the event-stream parser (proto/openai/sse.c), fed whole, in every two-piece
 * split, a byte at a time and in random pieces, with every kind of line end; and the chunk
 * reader (proto/openai/chunk.c) on chat, completion, usage, embedding and error documents,
 * escapes, and bytes that are not JSON, every truncation included. Then the per-request
 * metrics (proto/openai/openai.c) that docs/openai.md defines: output tokens, TPOT, goodput.
 */
#include "proto/openai/chunk.h"
#include "proto/openai/openai.h"
#include "proto/openai/sse.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- server-sent events ----------------------------------------------------------------- */

struct events {
    char log[4096]; /* "event|data\n" per event */
    size_t len;
    int n;
    int stop_after; /* stop the feed after this many (0: never) */
};

static int on_event(void *ud, const char *event, size_t el, const char *data, size_t dl)
{
    struct events *e = ud;
    int w = snprintf(e->log + e->len, sizeof(e->log) - e->len, "%.*s|%.*s\n", (int)el, event,
                     (int)dl, data);
    e->len += (size_t)w;
    e->n++;
    return e->stop_after && e->n >= e->stop_after ? 7 : 0;
}

/* Feeds |s| in pieces (the first |first| bytes, then |piece| at a time) and returns the log. */
static void feed(const char *s, size_t len, size_t first, size_t piece, struct events *e,
                 int *rc_out)
{
    struct cc_sse p;
    cc_sse_init(&p, 256);
    memset(e, 0, sizeof(*e));
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = off == 0 && first ? first : piece;
        if (n > len - off) n = len - off;
        rc = cc_sse_feed(&p, s + off, n, on_event, e);
        off += n;
    }
    if (rc_out) *rc_out = rc;
    cc_sse_release(&p);
}

static const char stream[] = "data: {\"a\":1}\n\n"
                             ": a comment\n"
                             "event: ping\r\n"
                             "data: x\r\n"
                             "data:y\r\n\r\n"
                             "id: 7\rretry: 10\rdata\r\r"
                             "data: tail\n"
                             "\n"
                             "field-without-colon\n"
                             "data: [DONE]\n\n"
                             "data: unfinished";
static const char want[] = "|{\"a\":1}\nping|x\ny\n|\n|tail\n|[DONE]\n";

static void test_sse_every_split(void **state)
{
    (void)state;
    size_t len = strlen(stream);
    struct events e;
    feed(stream, len, 0, len, &e, NULL);
    assert_string_equal(e.log, want);
    feed(stream, len, 0, 1, &e, NULL);
    assert_string_equal(e.log, want);
    for (size_t cut = 1; cut < len; cut++) {
        feed(stream, len, cut, len, &e, NULL);
        if (strcmp(e.log, want) != 0) fail_msg("split at %zu: %s", cut, e.log);
    }
    srand(11);
    for (int i = 0; i < 300; i++) {
        feed(stream, len, 0, 1 + (size_t)rand() % 13, &e, NULL);
        assert_string_equal(e.log, want);
    }
}

static void test_sse_crlf_across_pieces(void **state)
{
    (void)state;
    struct cc_sse p;
    cc_sse_init(&p, 0);
    struct events e = {0};
    assert_int_equal(cc_sse_feed(&p, "data: a\r", 8, on_event, &e), 0);
    assert_int_equal(cc_sse_feed(&p, "\n\r", 2, on_event, &e), 0);
    assert_int_equal(cc_sse_feed(&p, "\ndata: b\n\n", 10, on_event, &e), 0);
    assert_string_equal(e.log, "|a\n|b\n");
    cc_sse_release(&p);
}

static void test_sse_limits_and_stop(void **state)
{
    (void)state;
    int rc;
    struct events e;
    char big[600];
    memset(big, 'x', sizeof(big));
    memcpy(big, "data: ", 6);
    big[sizeof(big) - 1] = '\n';
    feed(big, sizeof(big), 0, 7, &e, &rc);
    assert_int_equal(rc, CC_ETOOBIG); /* a line over the bound, in pieces */
    feed(big, sizeof(big), 0, sizeof(big), &e, &rc);
    assert_int_equal(rc, CC_ETOOBIG); /* and whole */
    const char many[] = "data: 0123456789012345678901234567890123456789\n"
                        "data: 0123456789012345678901234567890123456789\n"
                        "data: 0123456789012345678901234567890123456789\n"
                        "data: 0123456789012345678901234567890123456789\n"
                        "data: 0123456789012345678901234567890123456789\n"
                        "data: 0123456789012345678901234567890123456789\n"
                        "data: 0123456789012345678901234567890123456789\n\n";
    feed(many, strlen(many), 0, 5, &e, &rc);
    assert_int_equal(rc, CC_ETOOBIG); /* an event's data over the bound */

    struct cc_sse p;
    cc_sse_init(&p, 0);
    memset(&e, 0, sizeof(e));
    e.stop_after = 1;
    const char two[] = "data: 1\n\ndata: 2\n\n";
    assert_int_equal(cc_sse_feed(&p, two, strlen(two), on_event, &e), 7);
    assert_string_equal(e.log, "|1\n");
    cc_sse_reset(&p);
    e.stop_after = 0;
    assert_int_equal(cc_sse_feed(&p, "data: 3\n\n", 9, on_event, &e), 0);
    assert_string_equal(e.log, "|1\n|3\n");
    cc_sse_release(&p);
}

/* ---- chunks ------------------------------------------------------------------------------ */

static struct cc_oai_chunk scan_ok(const char *json, struct cc_strbuf *text)
{
    struct cc_oai_chunk c;
    int rc = cc_oai_scan(json, strlen(json), &c, text);
    if (rc != 0) fail_msg("did not read: %s", json);
    return c;
}

static void test_chunk_chat(void **state)
{
    (void)state;
    struct cc_strbuf t = {0};
    struct cc_oai_chunk c = scan_ok(
        "{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}",
        &t);
    assert_false(c.content); /* the role alone is no output */
    assert_int_equal(c.completion_tokens, -1);
    c = scan_ok("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}", &t);
    assert_true(c.content);
    c = scan_ok(
        " {\"choices\" : [ {\"delta\" : {\"content\" : \"lo \\\"w\\u00f6rld\\\"\\n\"}} ] } ", &t);
    assert_true(c.content);
    assert_int_equal(t.len, strlen("Hello \"w\xc3\xb6rld\"\n"));
    assert_memory_equal(t.data, "Hello \"w\xc3\xb6rld\"\n", t.len);
    c = scan_ok("{\"choices\":[{\"delta\":{\"reasoning_content\":\"think\"}}]}", &t);
    assert_true(c.content); /* reasoning is output too, but not text */
    assert_int_equal(t.len, strlen("Hello \"w\xc3\xb6rld\"\n"));
    c = scan_ok("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
                "\"usage\":null}",
                &t);
    assert_false(c.content);
    assert_string_equal(c.finish_reason, "stop");
    c = scan_ok("{\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":42,"
                "\"total_tokens\":53,\"details\":{\"completion_tokens\":9}}}",
                NULL);
    assert_int_equal(c.completion_tokens, 42); /* only usage's own, not a nested one */
    assert_int_equal(c.prompt_tokens, 11);
    /* content at other places is not output */
    c = scan_ok("{\"choices\":[{\"delta\":{\"tool\":{\"content\":\"no\"}}}],\"content\":\"no\"}",
                NULL);
    assert_false(c.content);
    cc_strbuf_release(&t);
}

static void test_chunk_responses(void **state)
{
    (void)state;
    struct cc_strbuf t = {0};
    struct cc_oai_chunk c =
        scan_ok("{\"object\":\"chat.completion\",\"choices\":[{\"message\":{\"role\":\"assistant\","
                "\"content\":\"all of it\"},\"finish_reason\":\"length\"}],\"usage\":{"
                "\"completion_tokens\":3}}",
                &t);
    assert_true(c.content);
    assert_int_equal(c.completion_tokens, 3);
    c = scan_ok("{\"object\":\"text_completion\",\"choices\":[{\"text\":\" more\"}]}", &t);
    assert_true(c.content);
    assert_int_equal(t.len, 14);
    assert_memory_equal(t.data, "all of it more", 14);
    c = scan_ok("{\"object\":\"list\",\"data\":[{\"embedding\":[0.1,-2e-3,3E+2]},"
                "{\"embedding\":[]}],\"usage\":{\"prompt_tokens\":4}}",
                NULL);
    assert_int_equal(c.embeddings, 2);
    assert_false(c.content);
    assert_int_equal(c.completion_tokens, -1);
    cc_strbuf_release(&t);
}

static void test_chunk_errors(void **state)
{
    (void)state;
    struct cc_oai_chunk c = scan_ok(
        "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":429}}",
        NULL);
    assert_true(c.is_error);
    assert_string_equal(c.error, "Rate limit reached");
    c = scan_ok("{\"object\":\"error\",\"message\":\"model not found\",\"code\":404}", NULL);
    assert_true(c.is_error);
    assert_string_equal(c.error, "model not found");
    c = scan_ok("{\"error\":\"plain\"}", NULL);
    assert_true(c.is_error);
    assert_string_equal(c.error, "plain");
    c = scan_ok("{\"error\":null,\"choices\":[]}", NULL);
    assert_false(c.is_error);

    static const char *const bad[] = {
        "",
        "not json",
        "{\"a\":1",
        "{\"a\":1}}",
        "{\"a\" 1}",
        "{'a':1}",
        "[1,]",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"line\nbreak\"}",
        "{\"a\":tru}",
        "{\"a\":1} x",
    };
    for (size_t i = 0; i < CC_ARRAY_LEN(bad); i++)
        if (cc_oai_scan(bad[i], strlen(bad[i]), &c, NULL) != CC_EPROTO)
            fail_msg("read: %s", bad[i]);

    char deep[200];
    memset(deep, '[', sizeof(deep));
    assert_int_equal(cc_oai_scan(deep, sizeof(deep), &c, NULL), CC_EPROTO);
}

/* Every prefix of a chunk is rejected (or read, when it is whole), within its bytes. */
static void test_chunk_truncations(void **state)
{
    (void)state;
    const char *doc = "{\"choices\":[{\"delta\":{\"content\":\"a\\u00e9\\ud83d\\ude00\"}}],"
                      "\"usage\":{\"completion_tokens\":-12.5e1,\"prompt_tokens\":true}}";
    size_t len = strlen(doc);
    struct cc_strbuf t = {0};
    for (size_t n = 0; n <= len; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, doc, n);
        struct cc_oai_chunk c;
        t.len = 0;
        int rc = cc_oai_scan(copy, n, &c, &t);
        assert_int_equal(rc, n == len ? 0 : CC_EPROTO);
        free(copy);
    }
    assert_int_equal(t.len, 1 + 2 + 4);
    cc_strbuf_release(&t);
}

/* A streamed request whose output chunks arrived at |at| (ms after the start), ending at |end|. */
static struct cc_oai_req streamed(const uint64_t *at, size_t n, uint64_t end, uint64_t *gaps)
{
    struct cc_oai_req r;
    memset(&r, 0, sizeof(r));
    r.stream = true;
    r.status = 200;
    r.usage_out = r.usage_in = -1;
    r.t0 = 1000000000u;
    r.t_first = r.t0 + at[0] * 1000000u;
    r.t_last = r.t0 + at[n - 1] * 1000000u;
    r.t_end = r.t0 + end * 1000000u;
    r.chunks = (uint32_t)n;
    for (size_t i = 1; i < n; i++)
        gaps[i - 1] = (at[i] - at[i - 1]) * 1000000u;
    r.gaps = gaps;
    r.ngaps = n - 1;
    return r;
}

static void test_metrics(void **state)
{
    (void)state;
    uint64_t gaps[8];
    /* 5 chunks 25 ms apart from 200 ms: counted tokens, TPOT over the 4 gaps */
    const uint64_t at[] = {200, 225, 250, 275, 300};
    struct cc_oai_req r = streamed(at, 5, 301, gaps);
    assert_int_equal(cc_oai_tokens(&r), 5);
    assert_true(cc_oai_has_tpot(&r));
    assert_int_equal(cc_oai_tpot_ns(&r), 25000000u);
    /* the server's usage wins: 10 tokens over the same span */
    r.usage_out = 10;
    assert_int_equal(cc_oai_tokens(&r), 10);
    assert_int_equal(cc_oai_tpot_ns(&r), 100000000u / 9);

    struct cc_oai_slo slo = {.ttft_ms = 200, .tpot_ms = 12, .itl_ms = 25, .e2e_ms = 301};
    assert_true(cc_oai_slo_met(&r, &slo));
    slo.ttft_ms = 199.9;
    assert_false(cc_oai_slo_met(&r, &slo));
    slo = (struct cc_oai_slo){.itl_ms = 24.9};
    assert_false(cc_oai_slo_met(&r, &slo));
    slo = (struct cc_oai_slo){.tokens_per_s = 10 / 0.301};
    assert_true(cc_oai_slo_met(&r, &slo));
    slo.tokens_per_s += 0.01;
    assert_false(cc_oai_slo_met(&r, &slo));
    r.status = 500;
    slo = (struct cc_oai_slo){.e2e_ms = 1000};
    assert_false(cc_oai_slo_met(&r, &slo)); /* a failure never counts as goodput */

    /* every chunk in one read: TPOT is 0, and recorded as such */
    const uint64_t together[] = {475, 475, 475};
    r = streamed(together, 3, 476, gaps);
    assert_true(cc_oai_has_tpot(&r));
    assert_int_equal(cc_oai_tpot_ns(&r), 0);
    slo = (struct cc_oai_slo){.tpot_ms = 1};
    assert_true(cc_oai_slo_met(&r, &slo));

    /* one token: no TPOT; a whole response without usage: no token count, no TPOT */
    r = streamed(at, 1, 201, gaps);
    assert_false(cc_oai_has_tpot(&r));
    r.stream = false;
    assert_int_equal(cc_oai_tokens(&r), -1);
    assert_false(cc_oai_has_tpot(&r));
    slo = (struct cc_oai_slo){.ttft_ms = 1000}; /* no first token to time */
    assert_false(cc_oai_slo_met(&r, &slo));
    slo = (struct cc_oai_slo){.tokens_per_s = 1}; /* no count: not met */
    assert_false(cc_oai_slo_met(&r, &slo));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_every_split),     cmocka_unit_test(test_sse_crlf_across_pieces),
        cmocka_unit_test(test_sse_limits_and_stop), cmocka_unit_test(test_chunk_chat),
        cmocka_unit_test(test_chunk_responses),     cmocka_unit_test(test_chunk_errors),
        cmocka_unit_test(test_chunk_truncations),   cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
