/* SPDX-License-Identifier: MIT */
/*
 * chunk.c: a single-pass JSON reader that keeps only what an OpenAI-style response says about
 * its output (see chunk.h). It is a recursive descent over the bytes with the path of member
 * names kept as small codes, so that matching a value to what we want costs a few compares.
 */
#include "proto/openai/chunk.h"
#include "core/err.h"

#include <string.h>

enum key {
    K_OTHER,
    K_INDEX, /* an array element */
    K_CHOICES,
    K_DELTA,
    K_MESSAGE,
    K_CONTENT,
    K_REASONING,
    K_TEXT,
    K_FINISH_REASON,
    K_USAGE,
    K_COMPLETION_TOKENS,
    K_PROMPT_TOKENS,
    K_ERROR,
    K_DATA,
    K_OBJECT,
};

struct scan {
    const char *p, *end;
    struct cc_oai_chunk *c;
    struct cc_strbuf *text;
    uint8_t path[CC_OAI_MAX_DEPTH + 1];
    int n;             /* entries in path */
    bool object_error; /* top-level "object": "error" */
    char message[256]; /* a top-level "message" string */
};

static const struct {
    const char *name;
    uint8_t len, key;
} keys[] = {
    {"choices", 7, K_CHOICES},
    {"delta", 5, K_DELTA},
    {"message", 7, K_MESSAGE},
    {"content", 7, K_CONTENT},
    {"reasoning_content", 17, K_REASONING},
    {"reasoning", 9, K_REASONING},
    {"text", 4, K_TEXT},
    {"finish_reason", 13, K_FINISH_REASON},
    {"usage", 5, K_USAGE},
    {"completion_tokens", 17, K_COMPLETION_TOKENS},
    {"prompt_tokens", 13, K_PROMPT_TOKENS},
    {"error", 5, K_ERROR},
    {"data", 4, K_DATA},
    {"object", 6, K_OBJECT},
};

static uint8_t key_of(const char *s, size_t n)
{
    for (size_t i = 0; i < CC_ARRAY_LEN(keys); i++)
        if (keys[i].len == n && memcmp(keys[i].name, s, n) == 0) return keys[i].key;
    return K_OTHER;
}

static void ws(struct scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static long hex4(const char *s)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexv(s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Where decoded string bytes go: a growable buffer, a fixed one, or nowhere. */
struct sink {
    struct cc_strbuf *buf;
    char *fixed;
    size_t cap, len;
    bool any; /* at least one byte was in the string */
};

static void put(struct sink *k, const char *s, size_t n)
{
    k->any = k->any || n > 0;
    if (k->buf) cc_strbuf_add(k->buf, s, n);
    if (k->fixed) {
        size_t room = k->cap - 1 - k->len;
        if (n > room) n = room;
        memcpy(k->fixed + k->len, s, n);
        k->len += n;
        k->fixed[k->len] = '\0';
    }
}

static void put_cp(struct sink *k, unsigned long cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    put(k, b, n);
}

/*
 * A string at sc->p (its opening quote). Its raw bytes (between the quotes) are given in
 * *|raw| and *|rawlen| (for member names), and it is decoded into |k| when not NULL.
 */
static int string(struct scan *sc, struct sink *k, const char **raw, size_t *rawlen, bool *esc)
{
    sc->p++; /* the quote */
    const char *start = sc->p, *run = sc->p;
    bool escaped = false;
    while (sc->p < sc->end) {
        char ch = *sc->p;
        if (ch == '"') {
            if (k) put(k, run, (size_t)(sc->p - run));
            if (raw) *raw = start;
            if (rawlen) *rawlen = (size_t)(sc->p - start);
            if (esc) *esc = escaped;
            sc->p++;
            return 0;
        }
        if ((unsigned char)ch < 0x20) return CC_EPROTO;
        if (ch != '\\') {
            sc->p++;
            continue;
        }
        escaped = true;
        if (k) put(k, run, (size_t)(sc->p - run));
        if (sc->end - sc->p < 2) return CC_EPROTO;
        char e = sc->p[1];
        sc->p += 2;
        char one;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            one = e;
            break;
        case 'b':
            one = '\b';
            break;
        case 'f':
            one = '\f';
            break;
        case 'n':
            one = '\n';
            break;
        case 'r':
            one = '\r';
            break;
        case 't':
            one = '\t';
            break;
        case 'u': {
            if (sc->end - sc->p < 4) return CC_EPROTO;
            long cp = hex4(sc->p);
            if (cp < 0) return CC_EPROTO;
            sc->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = sc->end - sc->p >= 6 && sc->p[0] == '\\' && sc->p[1] == 'u'
                              ? hex4(sc->p + 2)
                              : -1;
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    sc->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            if (k) put_cp(k, (unsigned long)cp);
            run = sc->p;
            continue;
        }
        default:
            return CC_EPROTO;
        }
        if (k) put(k, &one, 1);
        run = sc->p;
    }
    return CC_EPROTO; /* no closing quote */
}

/* A number; its integer part (saturated) in *|out|. */
static int number(struct scan *sc, int64_t *out)
{
    const char *s = sc->p;
    bool neg = false;
    if (s < sc->end && *s == '-') {
        neg = true;
        s++;
    }
    if (s >= sc->end || *s < '0' || *s > '9') return CC_EPROTO;
    int64_t v = 0;
    if (*s == '0') {
        s++;
    } else {
        while (s < sc->end && *s >= '0' && *s <= '9') {
            if (v < INT64_MAX / 10) v = v * 10 + (*s - '0');
            s++;
        }
    }
    if (s < sc->end && *s == '.') {
        s++;
        if (s >= sc->end || *s < '0' || *s > '9') return CC_EPROTO;
        while (s < sc->end && *s >= '0' && *s <= '9')
            s++;
    }
    if (s < sc->end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < sc->end && (*s == '+' || *s == '-')) s++;
        if (s >= sc->end || *s < '0' || *s > '9') return CC_EPROTO;
        while (s < sc->end && *s >= '0' && *s <= '9')
            s++;
    }
    sc->p = s;
    *out = neg ? -v : v;
    return 0;
}

static int literal(struct scan *sc, const char *word, size_t n)
{
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0) return CC_EPROTO;
    sc->p += n;
    return 0;
}

static bool at(const struct scan *sc, uint8_t a, uint8_t b)
{
    return sc->path[0] == a && sc->path[1] == b;
}

/* A string value: is it one we keep? */
static int string_value(struct scan *sc)
{
    struct cc_oai_chunk *c = sc->c;
    struct sink k = {0};
    const uint8_t *p = sc->path;
    bool output = false, keep_text = false;
    if (sc->n == 4 && p[0] == K_CHOICES && p[1] == K_INDEX &&
        (p[2] == K_DELTA || p[2] == K_MESSAGE) && (p[3] == K_CONTENT || p[3] == K_REASONING)) {
        output = true;
        keep_text = p[3] == K_CONTENT;
    } else if (sc->n == 3 && p[0] == K_CHOICES && p[1] == K_INDEX && p[2] == K_TEXT) {
        output = keep_text = true;
    } else if (sc->n == 3 && p[0] == K_CHOICES && p[1] == K_INDEX && p[2] == K_FINISH_REASON) {
        k.fixed = c->finish_reason;
        k.cap = sizeof(c->finish_reason);
        c->finish_reason[0] = '\0';
        return string(sc, &k, NULL, NULL, NULL);
    } else if ((sc->n == 2 && at(sc, K_ERROR, K_MESSAGE)) || (sc->n == 1 && p[0] == K_ERROR)) {
        c->is_error = true;
        k.fixed = c->error;
        k.cap = sizeof(c->error);
        c->error[0] = '\0';
        return string(sc, &k, NULL, NULL, NULL);
    } else if (sc->n == 1 && p[0] == K_MESSAGE) {
        k.fixed = sc->message;
        k.cap = sizeof(sc->message);
        sc->message[0] = '\0';
        return string(sc, &k, NULL, NULL, NULL);
    } else if (sc->n == 1 && p[0] == K_OBJECT) {
        const char *raw;
        size_t rl;
        int rc = string(sc, NULL, &raw, &rl, NULL);
        if (rc == 0 && rl == 5 && memcmp(raw, "error", 5) == 0) sc->object_error = true;
        return rc;
    }
    if (!output) return string(sc, NULL, NULL, NULL, NULL);
    k.buf = keep_text ? sc->text : NULL;
    const char *raw;
    size_t rl;
    int rc = string(sc, &k, &raw, &rl, NULL);
    if (rc == 0 && rl > 0) c->content = true;
    return rc;
}

static int value(struct scan *sc);

static int object(struct scan *sc)
{
    sc->p++; /* { */
    if (sc->n >= CC_OAI_MAX_DEPTH) return CC_EPROTO;
    if (sc->n == 2 && sc->path[0] == K_DATA && sc->path[1] == K_INDEX) sc->c->embeddings++;
    if (sc->n == 1 && sc->path[0] == K_ERROR) sc->c->is_error = true;
    ws(sc);
    if (sc->p < sc->end && *sc->p == '}') {
        sc->p++;
        return 0;
    }
    for (;;) {
        ws(sc);
        if (sc->p >= sc->end || *sc->p != '"') return CC_EPROTO;
        const char *name;
        size_t nl;
        bool esc;
        if (string(sc, NULL, &name, &nl, &esc) != 0) return CC_EPROTO;
        ws(sc);
        if (sc->p >= sc->end || *sc->p != ':') return CC_EPROTO;
        sc->p++;
        sc->path[sc->n++] = esc ? K_OTHER : key_of(name, nl);
        int rc = value(sc);
        sc->n--;
        if (rc) return rc;
        ws(sc);
        if (sc->p >= sc->end) return CC_EPROTO;
        if (*sc->p == ',') {
            sc->p++;
            continue;
        }
        if (*sc->p == '}') {
            sc->p++;
            return 0;
        }
        return CC_EPROTO;
    }
}

static int array(struct scan *sc)
{
    sc->p++; /* [ */
    if (sc->n >= CC_OAI_MAX_DEPTH) return CC_EPROTO;
    ws(sc);
    if (sc->p < sc->end && *sc->p == ']') {
        sc->p++;
        return 0;
    }
    for (;;) {
        sc->path[sc->n++] = K_INDEX;
        int rc = value(sc);
        sc->n--;
        if (rc) return rc;
        ws(sc);
        if (sc->p >= sc->end) return CC_EPROTO;
        if (*sc->p == ',') {
            sc->p++;
            continue;
        }
        if (*sc->p == ']') {
            sc->p++;
            return 0;
        }
        return CC_EPROTO;
    }
}

static int value(struct scan *sc)
{
    ws(sc);
    if (sc->p >= sc->end) return CC_EPROTO;
    switch (*sc->p) {
    case '{':
        return object(sc);
    case '[':
        return array(sc);
    case '"':
        return string_value(sc);
    case 't':
        return literal(sc, "true", 4);
    case 'f':
        return literal(sc, "false", 5);
    case 'n':
        return literal(sc, "null", 4);
    default: {
        int64_t v;
        int rc = number(sc, &v);
        if (rc == 0 && sc->n == 2 && sc->path[0] == K_USAGE) {
            if (sc->path[1] == K_COMPLETION_TOKENS) sc->c->completion_tokens = v;
            if (sc->path[1] == K_PROMPT_TOKENS) sc->c->prompt_tokens = v;
        }
        return rc;
    }
    }
}

int cc_oai_scan(const char *json, size_t len, struct cc_oai_chunk *c, struct cc_strbuf *text)
{
    memset(c, 0, sizeof(*c));
    c->completion_tokens = c->prompt_tokens = -1;
    struct scan sc = {.p = json, .end = json + len, .c = c, .text = text};
    int rc = value(&sc);
    if (rc == 0) {
        ws(&sc);
        if (sc.p != sc.end) rc = CC_EPROTO;
    }
    if (sc.object_error && !c->is_error) {
        c->is_error = true;
        memcpy(c->error, sc.message, sizeof(c->error));
    }
    return rc;
}
