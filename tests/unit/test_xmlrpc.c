/* SPDX-License-Identifier: MIT */
/*
 * test_xmlrpc.c: the XML-RPC codec. Every response is parsed whole, then fed in every split
 * into two pieces, every split into three (short documents), and a byte at a time, by one
 * parser reused throughout: each way must give the same values, fault or error. Then the
 * escaping and base64 helpers, and the Lua binding's encoding, checked by reading its output
 * back through the parser.
 */
#include "proto/xmlrpc/xmlrpc.h"
#include "proto/xmlrpc/xmlrpc_lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- a canonical text of what a parse gave ------------------------------------------------ */

struct out {
    char s[16384];
    size_t n;
};

static void outf(struct out *o, const char *fmt, ...) CC_PRINTF(2, 3);
static void outf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->s + o->n, sizeof(o->s) - o->n, fmt, ap);
    va_end(ap);
    assert_true(k >= 0 && (size_t)k < sizeof(o->s) - o->n);
    o->n += (size_t)k;
}

static void out_bytes(struct out *o, const char *p, size_t n)
{
    outf(o, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            outf(o, "\\x%02x", c);
        else
            outf(o, "%c", c);
    }
    outf(o, "\"");
}

static uint32_t dump_node(struct out *o, const struct cc_xr_parser *p, uint32_t i)
{
    const struct cc_xr_node *n = &p->nodes[i];
    if (n->name_len != UINT32_MAX) {
        out_bytes(o, cc_xr_bytes(p, n->name_off), n->name_len);
        outf(o, "=");
    }
    switch (n->type) {
    case CC_XR_NIL:
        outf(o, "nil");
        break;
    case CC_XR_INT:
        outf(o, "i%lld", (long long)n->v.i);
        break;
    case CC_XR_BOOL:
        outf(o, "b%lld", (long long)n->v.i);
        break;
    case CC_XR_DOUBLE:
        outf(o, "d%.17g", n->v.d);
        break;
    case CC_XR_STRING:
        outf(o, "s");
        out_bytes(o, cc_xr_bytes(p, n->str_off), n->str_len);
        break;
    case CC_XR_DATETIME:
        outf(o, "t");
        out_bytes(o, cc_xr_bytes(p, n->str_off), n->str_len);
        break;
    case CC_XR_BASE64:
        outf(o, "B");
        out_bytes(o, cc_xr_bytes(p, n->str_off), n->str_len);
        break;
    case CC_XR_ARRAY:
    case CC_XR_STRUCT: {
        outf(o, n->type == CC_XR_ARRAY ? "[" : "{");
        uint32_t count = 0;
        for (uint32_t c = i + 1; c < n->end; c = p->nodes[c].end) {
            if (count++) outf(o, ",");
            dump_node(o, p, c);
        }
        assert_int_equal(count, n->count);
        outf(o, n->type == CC_XR_ARRAY ? "]" : "}");
        break;
    }
    default:
        fail_msg("unknown node type %d", n->type);
    }
    return n->end;
}

static void dump(struct out *o, const struct cc_xr_parser *p, enum cc_xr_outcome r)
{
    o->n = 0;
    o->s[0] = '\0';
    switch (r) {
    case CC_XR_OK:
        assert_int_equal(p->nodes[0].end, p->nnodes);
        dump_node(o, p, 0);
        break;
    case CC_XR_FAULT:
        outf(o, "fault %lld ", (long long)p->fault_code);
        out_bytes(o, cc_xr_bytes(p, p->fault_off), p->fault_len);
        break;
    case CC_XR_ERROR:
        outf(o, "error: %s", p->errmsg);
        break;
    case CC_XR_MORE:
        outf(o, "more");
        break;
    }
}

/* ---- feeding in every split ------------------------------------------------------------- */

static struct cc_xr_parser parser;
static bool parser_ready;

static struct cc_xr_parser *P(void)
{
    if (!parser_ready) {
        assert_int_equal(cc_xr_parser_init(&parser), 0);
        parser_ready = true;
    }
    return &parser;
}

/* Feeds |doc| in the pieces that end at |cuts| (ascending, inside the document). */
static enum cc_xr_outcome feed_cut(const char *doc, size_t len, const size_t *cuts, size_t ncuts)
{
    struct cc_xr_parser *p = P();
    cc_xr_parser_reset(p);
    size_t at = 0;
    enum cc_xr_outcome r = CC_XR_MORE;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        r = cc_xr_parser_feed(p, doc + at, end - at, k == ncuts);
        at = end;
        if (k < ncuts && r != CC_XR_MORE) {
            assert_int_equal(r, CC_XR_ERROR); /* only an error ends a document early */
            break;
        }
    }
    return r;
}

/* Whether two results agree. An error found early may be worded for where expat stood: the
 * outcome must agree, and our own errors' sentences too. */
static void same(const struct out *want, const struct out *got, const char *how, size_t a, size_t b)
{
    bool want_err = strncmp(want->s, "error: ", 7) == 0;
    bool expat = want_err && strstr(want->s, "not well-formed") != NULL;
    if (expat ? strncmp(got->s, "error: ", 7) == 0 : strcmp(want->s, got->s) == 0) return;
    fail_msg("%s at %zu,%zu:\n  whole: %s\n  split: %s", how, a, b, want->s, got->s);
}

/* Parses |doc| every way; returns the whole parse's canonical text. */
static const char *parse_all_ways(const char *doc)
{
    static struct out whole;
    struct out split;
    size_t len = strlen(doc);
    dump(&whole, P(), feed_cut(doc, len, NULL, 0));
    /* the one-shot entry point agrees with feeding */
    dump(&split, P(), cc_xr_parse(P(), doc, len));
    same(&whole, &split, "cc_xr_parse", 0, 0);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        dump(&split, P(), feed_cut(doc, len, cut, 1));
        same(&whole, &split, "two pieces", i, 0);
    }
    if (len <= 400) {
        for (size_t i = 1; i < len; i++)
            for (size_t j = i; j < len; j++) {
                size_t cut[2] = {i, j};
                dump(&split, P(), feed_cut(doc, len, cut, 2));
                same(&whole, &split, "three pieces", i, j);
            }
    }
    size_t *bytes = malloc((len + 1) * sizeof(*bytes));
    for (size_t i = 0; i < len; i++)
        bytes[i] = i + 1;
    dump(&split, P(), feed_cut(doc, len, bytes, len ? len - 1 : 0));
    same(&whole, &split, "bytes", 0, 0);
    free(bytes);
    return whole.s;
}

#define RESP(v)                                                                                    \
    "<?xml version=\"1.0\"?>\n<methodResponse><params><param>" v                                   \
    "</param></params></methodResponse>\n"

static void expect(const char *doc, const char *want)
{
    const char *got = parse_all_ways(doc);
    if (strcmp(got, want) != 0) fail_msg("document:\n%s\nwant: %s\ngot:  %s", doc, want, got);
}

static void expect_error(const char *doc, const char *want_part)
{
    const char *got = parse_all_ways(doc);
    if (strncmp(got, "error: ", 7) != 0 || !strstr(got, want_part))
        fail_msg("document:\n%s\nwant an error with: %s\ngot: %s", doc, want_part, got);
}

/* ---- responses ------------------------------------------------------------------------ */

static void test_scalars(void **state)
{
    (void)state;
    expect(RESP("<value><int>42</int></value>"), "i42");
    expect(RESP("<value><i4> -7 </i4></value>"), "i-7");
    expect(RESP("<value><i8>9223372036854775807</i8></value>"), "i9223372036854775807");
    expect(RESP("<value><i8>-9223372036854775808</i8></value>"), "i-9223372036854775808");
    expect(RESP("<value><ex:i8 xmlns:ex=\"http://ws.apache.org/xmlrpc/namespaces/extensions\">"
                "+5</ex:i8></value>"),
           "i5");
    expect(RESP("<value><boolean>1</boolean></value>"), "b1");
    expect(RESP("<value><boolean>\n0\n</boolean></value>"), "b0");
    expect(RESP("<value><double>2.5</double></value>"), "d2.5");
    expect(RESP("<value><double>-1.5e-3</double></value>"), "d-0.0015");
    expect(RESP("<value><string>a &amp; b &lt;c&gt; &#x41;&#13;</string></value>"),
           "s\"a & b <c> A\\x0d\"");
    expect(RESP("<value>  untyped  </value>"), "s\"  untyped  \"");
    expect(RESP("<value></value>"), "s\"\"");
    expect(RESP("<value><string/></value>"), "s\"\"");
    expect(RESP("<value><string><![CDATA[<raw> & ]]></string></value>"), "s\"<raw> & \"");
    expect(RESP("<value><string>caf\xc3\xa9</string></value>"), "s\"caf\\xc3\\xa9\"");
    expect(RESP("<value><dateTime.iso8601> 20260102T03:04:05 </dateTime.iso8601></value>"),
           "t\"20260102T03:04:05\"");
    expect(RESP("<value><base64>aGVsbG8gd29y\n bGQ=</base64></value>"), "B\"hello world\"");
    expect(RESP("<value><base64>AAEC/w</base64></value>"), "B\"\\x00\\x01\\x02\\xff\"");
    expect(RESP("<value><base64></base64></value>"), "B\"\"");
    expect(RESP("<value><nil/></value>"), "nil");
    expect(RESP("<value><ex:nil/></value>"), "nil");
    /* white space around a typed value is not a string */
    expect(RESP("<value>\n  <int>1</int>\n</value>"), "i1");
}

static void test_containers(void **state)
{
    (void)state;
    expect(RESP("<value><array><data>"
                "<value><int>1</int></value><value>two</value><value><nil/></value>"
                "<value><array><data/></array></value>"
                "</data></array></value>"),
           "[i1,s\"two\",nil,[]]");
    expect(RESP("<value><array><data></data></array></value>"), "[]");
    expect(RESP("<value><array/></value>"), "[]");
    expect(RESP("<value><struct>\n"
                "  <member><name>a</name><value><int>1</int></value></member>\n"
                "  <member><name>b c</name><value><struct>"
                "    <member><name>x</name><value><array><data><value>y</value></data></array>"
                "</value></member>"
                "  </struct></value></member>\n"
                "  <member><name></name><value><boolean>1</boolean></value></member>\n"
                "</struct></value>"),
           "{\"a\"=i1,\"b c\"={\"x\"=[s\"y\"]},\"\"=b1}");
    expect(RESP("<value><struct></struct></value>"), "{}");
    /* ISO-8859-1 arrives as UTF-8 */
    expect("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodResponse><params><param><value>"
           "\xe9t\xe9</value></param></params></methodResponse>",
           "s\"\\xc3\\xa9t\\xc3\\xa9\"");
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char doc[8192];
    size_t n = 0;
    n += (size_t)sprintf(doc + n, "<methodResponse><params><param>");
    for (int i = 0; i < CC_XR_MAX_DEPTH - 1; i++)
        n += (size_t)sprintf(doc + n, "<value><array><data>");
    n += (size_t)sprintf(doc + n, "<value><int>1</int></value>");
    for (int i = 0; i < CC_XR_MAX_DEPTH - 1; i++)
        n += (size_t)sprintf(doc + n, "</data></array></value>");
    sprintf(doc + n, "</param></params></methodResponse>");
    struct out o;
    dump(&o, P(), cc_xr_parse(P(), doc, strlen(doc)));
    assert_int_equal(strncmp(o.s, "[[[[", 4), 0);
    assert_non_null(strstr(o.s, "i1]]]]"));

    n = 0;
    n += (size_t)sprintf(doc + n, "<methodResponse><params><param>");
    for (int i = 0; i < CC_XR_MAX_DEPTH + 1; i++)
        n += (size_t)sprintf(doc + n, "<value><array><data>");
    sprintf(doc + n, "<value><int>1</int></value>");
    dump(&o, P(), cc_xr_parse(P(), doc, strlen(doc)));
    assert_non_null(strstr(o.s, "nest deeper"));
}

static void test_faults(void **state)
{
    (void)state;
    expect("<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct>"
           "<member><name>faultCode</name><value><int>4</int></value></member>"
           "<member><name>faultString</name><value><string>Too many &lt;params&gt;</string>"
           "</value></member></struct></value></fault></methodResponse>",
           "fault 4 \"Too many <params>\"");
    expect("<methodResponse><fault><value><struct>"
           "<member><name>faultString</name><value>untyped</value></member>"
           "<member><name>extra</name><value><int>1</int></value></member>"
           "<member><name>faultCode</name><value><i4>-32601</i4></value></member>"
           "</struct></value></fault></methodResponse>",
           "fault -32601 \"untyped\"");
    expect_error("<methodResponse><fault><value><struct>"
                 "<member><name>faultCode</name><value><int>4</int></value></member>"
                 "</struct></value></fault></methodResponse>",
                 "a fault without faultString");
    expect_error("<methodResponse><fault><value><struct>"
                 "<member><name>faultCode</name><value>4</value></member>"
                 "<member><name>faultString</name><value>x</value></member>"
                 "</struct></value></fault></methodResponse>",
                 "faultCode is not an int");
    expect_error("<methodResponse><fault><value><int>4</int></value></fault></methodResponse>",
                 "a <fault> holds a struct");
    expect_error("<methodResponse><fault></fault></methodResponse>", "a <fault> without");
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("", "the response is empty");
    expect_error("   \n", "the response is empty");
    expect_error("hello", "not well-formed XML");
    expect_error("<html><body>502 Bad Gateway</body></html>", "<html>, not an XML-RPC");
    expect_error("<methodCall><methodName>x</methodName></methodCall>", "not an XML-RPC");
    expect_error(RESP("<value><int>1</int></value>") "<junk/>", "not well-formed XML");
    expect_error("<methodResponse><params><param><value><int>1</int></value>",
                 "not well-formed XML");
    expect_error("<methodResponse><params><param><value><int>1</int></value></param>"
                 "<param><value><int>2</int></value></param></params></methodResponse>",
                 "more than one <param>");
    expect_error("<methodResponse><params></params></methodResponse>", "no <param>");
    expect_error("<methodResponse></methodResponse>", "neither <params> nor <fault>");
    expect_error("<methodResponse><params><param></param></params></methodResponse>",
                 "a <param> without a <value>");
    expect_error("<methodResponse><params><param><value>1</value></param></params><fault/>"
                 "</methodResponse>",
                 "more than one <params> or <fault>");
    expect_error(RESP("<value><integer>1</integer></value>"), "not an XML-RPC type");
    expect_error(RESP("<value><int>1</int><int>2</int></value>"), "more than one type");
    expect_error(RESP("<value><int>1x</int></value>"), "not an integer: '1x'");
    expect_error(RESP("<value><int></int></value>"), "not an integer");
    expect_error(RESP("<value><int>-</int></value>"), "not an integer");
    expect_error(RESP("<value><i8>9223372036854775808</i8></value>"), "not an integer");
    expect_error(RESP("<value><i8>-9223372036854775809</i8></value>"), "not an integer");
    expect_error(RESP("<value><boolean>true</boolean></value>"), "a boolean is 0 or 1");
    expect_error(RESP("<value><double>1.5.2</double></value>"), "not a double");
    expect_error(RESP("<value><double></double></value>"), "not a double");
    expect_error(RESP("<value><base64>a$==</base64></value>"), "bad base64");
    expect_error(RESP("<value><base64>a</base64></value>"), "bad base64");
    expect_error(RESP("<value><base64>YQ==YQ==</base64></value>"), "bad base64");
    expect_error(RESP("<value><base64>YQ===</base64></value>"), "bad base64");
    expect_error(RESP("<value><int><b/></int></value>"), "holds only text");
    expect_error(RESP("<value><nil><x/></nil></value>"), "holds only text");
    expect_error(RESP("<value><array><value>1</value></array></value>"), "one <data>");
    expect_error(RESP("<value><array><data><int>1</int></data></array></value>"),
                 "<data> holds <int>");
    expect_error(RESP("<value><struct><value>1</value></struct></value>"), "not <member>");
    expect_error(RESP("<value><struct><member><value>1</value><name>a</name></member></struct>"
                      "</value>"),
                 "one <name>, then one <value>");
    expect_error(RESP("<value><struct><member><name>a</name></member></struct></value>"),
                 "without a <value>");
    expect_error(RESP("<value><struct><member></member></struct></value>"), "without a <name>");
    expect_error(RESP("<value><struct><member><name>a</name><value>1</value><value>2</value>"
                      "</member></struct></value>"),
                 "one <name>, then one <value>");
    expect_error("<methodResponse><params><param><value>1</value><value>2</value></param>"
                 "</params></methodResponse>",
                 "it holds one <value>");
    /* entity expansion needs a DOCTYPE, which is refused outright */
    expect_error("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                 "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>"
                 "<methodResponse><params><param><value>&lol2;</value></param></params>"
                 "</methodResponse>",
                 "DOCTYPE is not allowed");
    expect_error(RESP("<value>&undefined;</value>"), "not well-formed XML");
    /* the line of our own errors is where the offending element is */
    expect_error("<methodResponse>\n<params>\n<param>\n<value><int>x</int></value>", "(line 4)");
}

/* After an outcome, more input changes nothing; after a reset, the parser starts afresh. */
static void test_reuse(void **state)
{
    (void)state;
    struct cc_xr_parser *p = P();
    const char *bad = "<oops/>";
    cc_xr_parser_reset(p);
    assert_int_equal(cc_xr_parser_feed(p, bad, strlen(bad), false), CC_XR_ERROR);
    assert_int_equal(cc_xr_parser_feed(p, "x", 1, true), CC_XR_ERROR);
    const char *good = RESP("<value><int>5</int></value>");
    assert_int_equal(cc_xr_parse(p, good, strlen(good)), CC_XR_OK);
    assert_int_equal(p->nodes[0].v.i, 5);
    assert_int_equal(cc_xr_parser_feed(p, "junk", 4, true), CC_XR_OK);
}

/* ---- encoding helpers ----------------------------------------------------------------------- */

static void test_escape(void **state)
{
    (void)state;
    struct cc_xr_buf b = {0};
    const char in[] = "a&b<c>d\re\tf\ng \xc3\xa9";
    assert_int_equal(cc_xr_escape(&b, in, sizeof(in) - 1), 0);
    assert_string_equal(b.p, "a&amp;b&lt;c&gt;d&#13;e\tf\ng \xc3\xa9");
    cc_xr_buf_clear(&b);
    assert_int_equal(cc_xr_escape(&b, "plain", 5), 0);
    assert_string_equal(b.p, "plain");
    cc_xr_buf_clear(&b);
    assert_int_equal(cc_xr_escape(&b, "a\0b", 3), -1);
    cc_xr_buf_clear(&b);
    assert_int_equal(cc_xr_escape(&b, "\x1b[0m", 4), -1);
    cc_xr_buf_release(&b);
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648's test vectors */
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    struct cc_xr_buf b = {0};
    for (size_t i = 0; i < CC_ARRAY_LEN(vec); i++) {
        cc_xr_buf_clear(&b);
        cc_xr_base64(&b, vec[i][0], strlen(vec[i][0]));
        assert_string_equal(b.p ? b.p : "", vec[i][1]);
    }
    /* every byte value, back through the parser */
    char bytes[256];
    for (int i = 0; i < 256; i++)
        bytes[i] = (char)i;
    cc_xr_buf_clear(&b);
    const char *head = "<methodResponse><params><param><value><base64>";
    cc_xr_buf_add(&b, head, strlen(head));
    cc_xr_base64(&b, bytes, sizeof(bytes));
    const char *tail = "</base64></value></param></params></methodResponse>";
    cc_xr_buf_add(&b, tail, strlen(tail));
    assert_int_equal(cc_xr_parse(P(), b.p, b.len), CC_XR_OK);
    assert_int_equal(P()->nodes[0].str_len, 256);
    assert_memory_equal(cc_xr_bytes(P(), P()->nodes[0].str_off), bytes, 256);
    cc_xr_buf_release(&b);
}

static void test_method_names(void **state)
{
    (void)state;
    assert_true(cc_xr_method_name_ok("get_time", 8));
    assert_true(cc_xr_method_name_ok("system.listMethods", 18));
    assert_true(cc_xr_method_name_ok("a:b/c", 5));
    assert_false(cc_xr_method_name_ok("", 0));
    assert_false(cc_xr_method_name_ok("a b", 3));
    assert_false(cc_xr_method_name_ok("a<b", 3));
}

/* ---- the Lua binding ------------------------------------------------------------------------ */

static lua_State *lua(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushcfunction(L, xmlrpc_lua_open);
    lua_call(L, 0, 1);
    lua_setglobal(L, "x");
    return L;
}

static void run_lua(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != 0) fail_msg("%s", lua_tostring(L, -1));
}

static void test_lua_encode(void **state)
{
    (void)state;
    lua_State *L = lua();
    run_lua(L,
            "function eq(a, b) if a ~= b then error(('\\n got: %s\\nwant: %s'):format(a, b), 2) "
            "end end\n"
            "function raises(f, pat) local ok, e = pcall(f); assert(not ok, 'no error');"
            "  assert(tostring(e):find(pat, 1, true), e) end\n"
            "local V = function(s) return '<value>' .. s .. '</value>' end\n"
            "eq(x.encode(1), V'<int>1</int>')\n"
            "eq(x.encode(-2147483648), V'<int>-2147483648</int>')\n"
            "eq(x.encode(2147483648), V'<i8>2147483648</i8>')\n"
            "eq(x.encode(2.5), V'<double>2.5</double>')\n"
            "eq(x.encode(0.1), V'<double>0.1</double>')\n"
            "eq(x.encode(1/3), V'<double>0.3333333333333333</double>')\n"
            "eq(x.encode(true), V'<boolean>1</boolean>')\n"
            "eq(x.encode(false), V'<boolean>0</boolean>')\n"
            "eq(x.encode('a<&>\\r'), V'<string>a&lt;&amp;&gt;&#13;</string>')\n"
            "eq(x.encode({}), V'<struct></struct>')\n"
            "eq(x.encode({1, 'a'}), '<value><array><data>' .. V'<int>1</int>' .. "
            "V'<string>a</string>' .. '</data></array></value>')\n"
            "eq(x.encode({k = 1}), '<value><struct><member><name>k</name>' .. V'<int>1</int>' .. "
            "'</member></struct></value>')\n"
            "eq(x.encode(setmetatable({}, x.mt.array)), V'<array><data></data></array>')\n"
            "eq(x.encode(setmetatable({}, x.mt.struct)), V'<struct></struct>')\n"
            "eq(x.encode(setmetatable({value = 3}, x.mt.double)), V'<double>3</double>')\n"
            "eq(x.encode(setmetatable({value = '20260102T03:04:05'}, x.mt.datetime)), "
            "   V'<dateTime.iso8601>20260102T03:04:05</dateTime.iso8601>')\n"
            "eq(x.encode(setmetatable({data = 'hi\\0'}, x.mt.binary)), V'<base64>aGkA</base64>')\n"
            "eq(x.encode(nil, true), V'<nil/>')\n"
            "eq(x.encode(x.null, true), V'<nil/>')\n"
            "raises(function() x.encode(nil) end, 'allow_none')\n"
            "raises(function() x.encode({1, nil, 3}) end, 'holes')\n"
            "raises(function() x.encode({1, k = 2}) end, 'mixes')\n"
            "raises(function() x.encode({[true] = 1}) end, 'key of type boolean')\n"
            "raises(function() x.encode(print) end, 'function cannot be sent')\n"
            "raises(function() x.encode('a\\0b') end, 'control character')\n"
            "local t = {}; t[1] = t\n"
            "raises(function() x.encode(t) end, 'nest deeper')\n"
            "raises(function() x.encode(setmetatable({1}, x.mt.struct)) end, 'keys are strings')\n"
            "raises(function() x.encode_call('bad name', false) end, 'not a valid')\n"
            "eq(x.encode_call('m.n', false), '<?xml "
            "version=\"1.0\"?>\\n<methodCall><methodName>m.n</methodName><params></params></"
            "methodCall>\\n')\n"
            "eq(select(2, x.encode_call('m', true, nil, nil):gsub('<nil/>', '')), 2)\n");
    lua_close(L);
}

/* Random values go out through the encoder and back in through the parser unchanged. */
static void test_lua_round_trip(void **state)
{
    (void)state;
    lua_State *L = lua();
    run_lua(L, "math.randomseed(7)\n"
               "local function rstr() local t = {} for i = 1, math.random(0, 12) do\n"
               "  local c = math.random(9, 255); if c == 11 or c == 12 or (c > 13 and c < 32) then "
               "c = 65 end\n"
               "  t[i] = c < 128 and string.char(c) or ('\\xc3' .. string.char(128 + c % 64)) end\n"
               "  return table.concat(t) end\n"
               "local function rval(d) local k = math.random(1, d < 4 and 9 or 6)\n"
               "  if k == 1 then return math.random(-1e6, 1e6) end\n"
               "  if k == 2 then return math.random() * 1e3 - 500 end\n"
               "  if k == 3 then return math.random(0, 1) == 1 end\n"
               "  if k == 4 then return rstr() end\n"
               "  if k == 5 then return x.null end\n"
               "  if k == 6 then return setmetatable({value = '2026010' .. math.random(1, 9) .. "
               "'T00:00:00'}, x.mt.datetime) end\n"
               "  if k == 7 then local t = setmetatable({}, x.mt.array) for i = 1, math.random(0, "
               "4) do t[i] = rval(d + 1) end return t end\n"
               "  local t = setmetatable({}, x.mt.struct) for i = 1, math.random(0, 4) do t[rstr() "
               ".. i] = rval(d + 1) end return t end\n"
               "local function same(a, b)\n"
               "  if type(a) ~= type(b) then return false end\n"
               "  if type(a) ~= 'table' then return a == b end\n"
               "  if getmetatable(a) == x.mt.datetime then return a.value == b.value end\n"
               "  if a == x.null then return b == x.null end\n"
               "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
               "  for k in pairs(b) do if a[k] == nil then return false end end\n"
               "  return true end\n"
               "for i = 1, 2000 do\n"
               "  local v = rval(1)\n"
               "  local doc = '<methodResponse><params><param>' .. x.encode(v, true) .. "
               "'</param></params></methodResponse>'\n"
               "  local kind, got = x.decode(doc)\n"
               "  assert(kind == 'ok', tostring(got) .. '\\n' .. doc)\n"
               "  assert(same(v, got), doc)\n"
               "end\n"
               "local kind, code, msg = "
               "x.decode('<methodResponse><fault><value><struct><member><name>faultCode</name>"
               "<value><int>3</int></value></member><member><name>faultString</name><value>no</"
               "value></member>"
               "</struct></value></fault></methodResponse>')\n"
               "assert(kind == 'fault' and code == 3 and msg == 'no')\n"
               "local none, err = x.decode('<html/>')\n"
               "assert(none == nil and err:find('not an XML-RPC', 1, true), err)\n");
    lua_close(L);
}

static int teardown_all(void **state)
{
    (void)state;
    if (parser_ready) cc_xr_parser_release(&parser);
    parser_ready = false;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_deep_nesting),   cmocka_unit_test(test_faults),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_escape),         cmocka_unit_test(test_base64),
        cmocka_unit_test(test_method_names),   cmocka_unit_test(test_lua_encode),
        cmocka_unit_test(test_lua_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
