/* SPDX-License-Identifier: MIT */
/*
 * value.c: PostgreSQL's text forms of the common types, read into C values, and the names
 * that SQL texts get in the statistics. Pure functions: no libpq, no Lua.
 */
#include "proto/pg/pg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Type OIDs from PostgreSQL's pg_type.dat; they are fixed for built-in types. */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
};

enum pg_vtype pg_vtype_of(unsigned oid)
{
    switch (oid) {
    case OID_BOOL:
        return PGV_BOOL;
    case OID_INT8:
    case OID_INT2:
    case OID_INT4:
    case OID_OID:
        return PGV_INT;
    case OID_FLOAT4:
    case OID_FLOAT8:
        return PGV_FLOAT;
    default:
        return PGV_TEXT;
    }
}

bool pg_parse_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == n || n - i > 19) return false;
    /* accumulate as a negative number: its range holds INT64_MIN */
    int64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return false;
        if (v < (INT64_MIN + (int64_t)d) / 10) return false;
        v = v * 10 - (int64_t)d;
    }
    if (!neg) {
        if (v == INT64_MIN) return false;
        v = -v;
    }
    *out = v;
    return true;
}

bool pg_parse_float(const char *s, size_t n, double *out)
{
    if (n == 3 && memcmp(s, "NaN", 3) == 0) {
        *out = NAN;
        return true;
    }
    if (n == 8 && memcmp(s, "Infinity", 8) == 0) {
        *out = INFINITY;
        return true;
    }
    if (n == 9 && memcmp(s, "-Infinity", 9) == 0) {
        *out = -INFINITY;
        return true;
    }
    /* digits, one dot, an exponent: checked here so that strtod sees nothing it would read
     * differently (hex floats, "inf", leading blanks) */
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp)) return false;
    size_t i = 0;
    if (s[i] == '-' || s[i] == '+') i++;
    size_t digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
        digits++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (digits == 0) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        size_t exp_digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            exp_digits++;
        }
        if (exp_digits == 0) return false;
    }
    if (i != n) return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    *out = strtod(tmp, NULL);
    return true;
}

bool pg_parse_bool(const char *s, size_t n, bool *out)
{
    if (n != 1 || (s[0] != 't' && s[0] != 'f')) return false;
    *out = s[0] == 't';
    return true;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

size_t pg_stats_name(const char *sql, size_t n, char *out, size_t cap)
{
    CC_ASSERT(cap > PG_MAX_NAME + 3);
    size_t o = 0;
    bool space = false, cut = false;
    for (size_t i = 0; i < n; i++) {
        char ch = sql[i];
        if (is_blank(ch)) {
            space = o > 0;
            continue;
        }
        if (space) {
            if (o + 1 > PG_MAX_NAME) {
                cut = true;
                break;
            }
            out[o++] = ' ';
            space = false;
        }
        if (o + 1 > PG_MAX_NAME) {
            cut = true;
            break;
        }
        out[o++] = ch;
    }
    if (o == 0) {
        memcpy(out, "(empty)", 7);
        return 7;
    }
    if (cut) {
        /* never end inside a UTF-8 sequence: a last character missing bytes goes */
        size_t k = o;
        while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)out[k - 1] >= 0xC0) {
            unsigned char lead = (unsigned char)out[k - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
            if (o - (k - 1) < need) o = k - 1;
        }
        memcpy(out + o, "...", 3);
        o += 3;
    }
    return o;
}

size_t pg_first_line(const char *msg, char *out, size_t cap)
{
    CC_ASSERT(cap > 0);
    if (!msg) msg = "";
    static const char *const prefixes[] = {"ERROR:  ", "FATAL:  ", "PANIC:  "};
    for (size_t i = 0; i < CC_ARRAY_LEN(prefixes); i++) {
        size_t pl = strlen(prefixes[i]);
        if (strncmp(msg, prefixes[i], pl) == 0) {
            msg += pl;
            break;
        }
    }
    size_t n = strcspn(msg, "\n");
    while (n > 0 && is_blank(msg[n - 1]))
        n--;
    if (n >= cap) n = cap - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
    return n;
}
