/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pg_value.c: the PostgreSQL client's text readers on arbitrary bytes: the integer, float
 * and boolean forms, the statistics name of an SQL text, and the first line of a message.
 */
#include "proto/pg/pg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: a read past the end is caught */
    char *p = malloc(size ? size : 1);
    memcpy(p, data, size);
    int64_t v;
    double d;
    bool b;
    bool int_ok = pg_parse_int(p, size, &v);
    bool float_ok = pg_parse_float(p, size, &d);
    pg_parse_bool(p, size, &b);
    if (int_ok && !float_ok) abort(); /* every integer form is a float form */
    char name[PG_MAX_NAME + 8];
    size_t n = pg_stats_name(p, size, name, sizeof(name));
    if (n == 0 || n > PG_MAX_NAME + 3) abort();
    free(p);

    char *z = malloc(size + 1); /* messages are NUL-terminated */
    memcpy(z, data, size);
    z[size] = '\0';
    char line[64];
    size_t ll = pg_first_line(z, line, sizeof(line));
    if (ll >= sizeof(line) || strlen(line) != ll) abort();
    free(z);
    return 0;
}
