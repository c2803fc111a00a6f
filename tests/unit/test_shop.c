/* SPDX-License-Identifier: MIT */
/*
 * test_shop.c: the demo shop's endpoints through socketless httpd connections: login rules,
 * the catalogue and paging, the session cookie and bearer token, carts, checkout, session
 * eviction, GET /flaky by counts and GET /slow answering later without blocking the loop.
 */
#include "demo/shop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "httpc.h"

static uv_loop_t loop;
static struct cc_httpd *srv;
static struct cc_shop *shop;
static struct tc res; /* the last response */

static void start(const struct cc_shop_opts *o)
{
    uv_loop_init(&loop);
    srv = cc_httpd_new(&loop, NULL);
    shop = cc_shop_new(o);
    assert_int_equal(cc_shop_mount(shop, srv), 0);
    tc_init(&res);
}

static void stop(void)
{
    tc_release(&res);
    cc_httpd_close(srv, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    cc_shop_free(shop);
}

/* Parses the output of |c| into |t| (fresh) and returns the number of responses. */
static int parse_out(struct cc_httpd_conn *c, struct tc *t, bool head)
{
    size_t len;
    const char *out = cc_httpd_test_conn_output(c, &len);
    tc_release(t);
    tc_init(t);
    t->head[0] = head;
    tc_parse_bytes(t, out, len);
    assert_int_equal(t->error, 0);
    return t->nresp;
}

/* Sends |method| |path| with |headers| (CRLF-terminated lines) and |body|; returns the status. */
static int call(const char *method, const char *path, const char *headers, const char *body)
{
    char req[4096];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: shop\r\n%sContent-Length: %zu\r\n\r\n%s",
             method, path, headers ? headers : "", body ? strlen(body) : 0, body ? body : "");
    struct cc_httpd_conn *c = cc_httpd_test_conn_new(srv);
    cc_httpd_test_conn_feed(c, req, strlen(req));
    bool head = strcmp(method, "HEAD") == 0;
    TC_RUN_UNTIL(&loop, parse_out(c, &res, head) == 1);
    cc_httpd_test_conn_free(c);
    return res.resp[0].status;
}

static json_t *body_json(void)
{
    json_t *j = json_loads(res.resp[0].body, 0, NULL);
    assert_non_null(j);
    return j;
}

/* Logs in as |user| and returns the token (static storage). */
static const char *login(const char *user)
{
    static char token[64];
    char body[128];
    snprintf(body, sizeof(body), "{\"username\": \"%s\", \"password\": \"secret\"}", user);
    assert_int_equal(call("POST", "/login", "Content-Type: application/json\r\n", body), 200);
    json_t *j = body_json();
    snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(j, "token")));
    json_decref(j);
    return token;
}

static const char *cookie_hdr(const char *token)
{
    static char h[128];
    snprintf(h, sizeof(h), "Cookie: theme=dark; session=%s\r\n", token);
    return h;
}

static const char *bearer_hdr(const char *token)
{
    static char h[128];
    snprintf(h, sizeof(h), "Authorization: Bearer %s\r\n", token);
    return h;
}

static void test_pages(void **state)
{
    (void)state;
    start(NULL);
    assert_int_equal(call("GET", "/", NULL, NULL), 200);
    assert_non_null(strstr(res.resp[0].body, "<h1>cicada demo shop</h1>"));
    assert_string_equal(tc_header(&res, 0, "content-type"), "text/html; charset=utf-8");
    assert_int_equal(call("GET", "/health", NULL, NULL), 200);
    assert_string_equal(res.resp[0].body, "{\"status\":\"ok\"}");
    assert_int_equal(call("HEAD", "/health", NULL, NULL), 200);
    assert_int_equal(res.resp[0].body_len, 0);
    assert_int_equal(call("POST", "/health", NULL, NULL), 405);
    assert_int_equal(call("GET", "/nope", NULL, NULL), 404);
    stop();
}

static void test_login(void **state)
{
    (void)state;
    start(NULL);
    const char *json = "Content-Type: application/json\r\n";
    const char *form = "Content-Type: application/x-www-form-urlencoded\r\n";

    assert_int_equal(call("POST", "/login", json, "{\"username\":\"ann\",\"password\":\"secret\"}"),
                     200);
    json_t *j = body_json();
    const char *token = json_string_value(json_object_get(j, "token"));
    assert_int_equal(strlen(token), 32);
    assert_string_equal(json_string_value(json_object_get(j, "username")), "ann");
    char want[128];
    snprintf(want, sizeof(want), "session=%s; Path=/; HttpOnly", token);
    assert_string_equal(tc_header(&res, 0, "set-cookie"), want);
    json_decref(j);

    /* A form body, and JSON sent as a form (as curl -d does). */
    assert_int_equal(call("POST", "/login", form, "username=b%20b&password=secret"), 200);
    assert_int_equal(call("POST", "/login", form, "{\"username\":\"c\",\"password\":\"secret\"}"),
                     200);

    assert_int_equal(call("POST", "/login", json, "{\"username\":\"ann\",\"password\":\"no\"}"),
                     401);
    assert_int_equal(call("POST", "/login", json, "{\"username\":\"ann\"}"), 400);
    assert_int_equal(call("POST", "/login", json, "{\"username\":\"\",\"password\":\"secret\"}"),
                     400);
    assert_int_equal(call("POST", "/login", json, "{\"username\":1,\"password\":\"secret\"}"), 400);
    assert_int_equal(call("POST", "/login", json, "[1, 2]"), 400);
    assert_int_equal(call("POST", "/login", json, "{broken"), 400);
    assert_int_equal(call("POST", "/login", form, "username=ann"), 400);
    assert_int_equal(call("POST", "/login", form, "username=%00x&password=secret"), 400);
    assert_int_equal(call("POST", "/login", form, "username=%ff&password=secret"), 400);
    assert_int_equal(call("POST", "/login", NULL, NULL), 400);
    char body[200];
    snprintf(body, sizeof(body), "username=%065d&password=secret", 0);
    assert_int_equal(call("POST", "/login", form, body), 400);
    snprintf(body, sizeof(body), "username=%064d&password=secret", 0);
    assert_int_equal(call("POST", "/login", form, body), 200);
    stop();
}

static void test_items(void **state)
{
    (void)state;
    start(NULL);
    assert_int_equal(call("GET", "/items", NULL, NULL), 200);
    json_t *j = body_json();
    json_t *items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), CC_SHOP_ITEMS);
    json_t *first = json_array_get(items, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "id")), 1);
    assert_true(json_is_string(json_object_get(first, "name")));
    assert_true(json_is_number(json_object_get(first, "price")));
    assert_int_equal(json_integer_value(json_object_get(j, "total")), CC_SHOP_ITEMS);
    json_decref(j);

    assert_int_equal(call("GET", "/items?page=2&per_page=5", NULL, NULL), 200);
    j = body_json();
    items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), 5);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "id")), 6);
    assert_int_equal(json_integer_value(json_object_get(j, "page")), 2);
    json_decref(j);
    assert_int_equal(call("GET", "/items?page=9&per_page=5", NULL, NULL), 200);
    j = body_json();
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
    json_decref(j);
    assert_int_equal(call("GET", "/items?per_page=0", NULL, NULL), 400);
    assert_int_equal(call("GET", "/items?page=x", NULL, NULL), 400);
    assert_int_equal(call("GET", "/items?per_page=101", NULL, NULL), 400);

    assert_int_equal(call("GET", "/items/7", NULL, NULL), 200);
    j = body_json();
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 7);
    json_decref(j);
    assert_int_equal(call("GET", "/items/20", NULL, NULL), 200);
    assert_int_equal(call("GET", "/items/21", NULL, NULL), 404);
    assert_int_equal(call("GET", "/items/0", NULL, NULL), 404);
    assert_int_equal(call("GET", "/items/abc", NULL, NULL), 404);
    assert_int_equal(call("GET", "/items/7/x", NULL, NULL), 404);
    stop();
}

static void test_cart_and_checkout(void **state)
{
    (void)state;
    start(NULL);
    const char *add = "{\"item_id\": 3, \"quantity\": 2}";
    assert_int_equal(call("POST", "/cart", NULL, add), 401);
    assert_string_equal(tc_header(&res, 0, "www-authenticate"), "Bearer");
    assert_int_equal(call("GET", "/cart", NULL, NULL), 401);
    assert_int_equal(call("POST", "/checkout", NULL, NULL), 401);
    assert_int_equal(call("GET", "/cart", cookie_hdr("0123456789abcdef0123456789abcdef"), NULL),
                     401);

    char token[64];
    snprintf(token, sizeof(token), "%s", login("dora"));
    assert_int_equal(call("POST", "/cart", cookie_hdr(token), add), 200);
    json_t *j = body_json();
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 2);
    json_decref(j);
    assert_int_equal(call("POST", "/cart", bearer_hdr(token), "item_id=5"), 200);
    assert_int_equal(call("POST", "/cart", cookie_hdr(token), "{\"item_id\": 99}"), 404);
    assert_int_equal(call("POST", "/cart", cookie_hdr(token), "{\"item_id\": \"3\"}"), 400);
    assert_int_equal(call("POST", "/cart", cookie_hdr(token), "{\"item_id\": 3, \"quantity\": 0}"),
                     400);
    assert_int_equal(call("POST", "/cart", cookie_hdr(token), "{nope"), 400);
    assert_int_equal(call("POST", "/cart", cookie_hdr(token), "item_id=x"), 400);

    assert_int_equal(call("GET", "/cart", bearer_hdr(token), NULL), 200);
    j = body_json();
    json_t *items = json_object_get(j, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "item_id")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "quantity")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 3);
    double total = json_number_value(json_object_get(j, "total"));
    json_decref(j);

    assert_int_equal(call("POST", "/checkout", cookie_hdr(token), NULL), 200);
    j = body_json();
    assert_int_equal(json_integer_value(json_object_get(j, "order_id")), 1);
    assert_true(json_number_value(json_object_get(j, "total")) == total);
    assert_int_equal(json_integer_value(json_object_get(j, "items")), 3);
    json_decref(j);
    assert_int_equal(call("POST", "/checkout", cookie_hdr(token), NULL), 400);
    assert_int_equal(call("GET", "/cart", cookie_hdr(token), NULL), 200);
    assert_non_null(strstr(res.resp[0].body, "\"items\":[]"));

    /* Quantities are clamped per item. */
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            call("POST", "/cart", cookie_hdr(token), "{\"item_id\":1,\"quantity\":999}"), 200);
    j = body_json();
    assert_int_equal(json_integer_value(json_object_get(j, "count")), CC_SHOP_MAX_QUANTITY);
    json_decref(j);
    assert_int_equal(call("POST", "/checkout", cookie_hdr(token), NULL), 200);
    j = body_json();
    assert_int_equal(json_integer_value(json_object_get(j, "order_id")), 2);
    json_decref(j);
    stop();
}

/* The least recently used session goes when a login needs room. */
static void test_session_eviction(void **state)
{
    (void)state;
    struct cc_shop_opts o;
    cc_shop_opts_defaults(&o);
    o.max_sessions = 2;
    start(&o);
    char t1[64], t2[64], t3[64], t4[64];
    snprintf(t1, sizeof(t1), "%s", login("one"));
    snprintf(t2, sizeof(t2), "%s", login("two"));
    snprintf(t3, sizeof(t3), "%s", login("three"));
    assert_int_equal(call("GET", "/cart", cookie_hdr(t1), NULL), 401);
    assert_int_equal(call("GET", "/cart", cookie_hdr(t3), NULL), 200);
    assert_int_equal(call("GET", "/cart", cookie_hdr(t2), NULL), 200); /* two is now the newest */
    snprintf(t4, sizeof(t4), "%s", login("four"));
    assert_int_equal(call("GET", "/cart", cookie_hdr(t3), NULL), 401);
    assert_int_equal(call("GET", "/cart", cookie_hdr(t2), NULL), 200);
    assert_int_equal(call("GET", "/cart", cookie_hdr(t4), NULL), 200);
    stop();
}

static int count_failures(const char *path, int n)
{
    int fails = 0;
    for (int i = 0; i < n; i++) {
        int st = call("GET", path, NULL, NULL);
        assert_true(st == 200 || st == 500);
        fails += st == 500;
    }
    return fails;
}

static void test_flaky(void **state)
{
    (void)state;
    start(NULL);
    /* Every 5th by default: requests 5, 10, ... fail. */
    for (int i = 1; i <= 10; i++)
        assert_int_equal(call("GET", "/flaky", NULL, NULL), i % 5 == 0 ? 500 : 200);
    assert_int_equal(count_failures("/flaky", 100), 20);
    assert_int_equal(count_failures("/flaky?every=2", 100), 50);
    assert_int_equal(count_failures("/flaky?fail=0.25", 100), 25);
    assert_int_equal(count_failures("/flaky?fail=0.2", 1000), 200);
    assert_int_equal(count_failures("/flaky?fail=0", 50), 0);
    assert_int_equal(count_failures("/flaky?fail=1", 50), 50);
    assert_int_equal(call("GET", "/flaky?fail=1.5", NULL, NULL), 400);
    assert_int_equal(call("GET", "/flaky?fail=x", NULL, NULL), 400);
    assert_int_equal(call("GET", "/flaky?every=0", NULL, NULL), 400);
    stop();
}

/* GET /slow answers from a timer; other requests are answered meanwhile (counts only). */
static void test_slow(void **state)
{
    (void)state;
    struct cc_shop_opts o;
    cc_shop_opts_defaults(&o);
    o.slow_max_ms = 30;
    start(&o);
    struct tc slow;
    tc_init(&slow);
    struct cc_httpd_conn *a = cc_httpd_test_conn_new(srv);
    static const char req[] = "GET /slow?ms=100000 HTTP/1.1\r\n\r\n";
    cc_httpd_test_conn_feed(a, req, sizeof(req) - 1);
    assert_int_equal(parse_out(a, &slow, false), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(call("GET", "/health", NULL, NULL), 200);
    assert_int_equal(parse_out(a, &slow, false), 0); /* still waiting */
    TC_RUN_UNTIL(&loop, parse_out(a, &slow, false) == 1);
    assert_int_equal(slow.resp[0].status, 200);
    assert_string_equal(slow.resp[0].body, "{\"slept_ms\":30}"); /* clamped */
    cc_httpd_test_conn_free(a);
    tc_release(&slow);

    assert_int_equal(call("GET", "/slow?ms=0", NULL, NULL), 200);
    assert_int_equal(call("GET", "/slow?ms=-1", NULL, NULL), 400);
    assert_int_equal(call("GET", "/slow?ms=soon", NULL, NULL), 400);

    /* A client that leaves: the shop drops its timer (no leak, the loop closes clean). */
    struct cc_httpd_conn *b = cc_httpd_test_conn_new(srv);
    cc_httpd_test_conn_feed(b, req, sizeof(req) - 1);
    cc_httpd_test_conn_free(b);
    struct cc_httpd_stats st;
    cc_httpd_get_stats(srv, &st);
    assert_int_equal(st.aborted, 1);
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_items),
        cmocka_unit_test(test_cart_and_checkout),
        cmocka_unit_test(test_session_eviction),
        cmocka_unit_test(test_flaky),
        cmocka_unit_test(test_slow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
