/* SPDX-License-Identifier: MIT */
/* alloc.c: allocation wrappers that end the program on exhaustion, and the assertion hook. */
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static CC_NORETURN void oom(size_t n)
{
    fprintf(stderr, "cicada: out of memory allocating %zu bytes\n", n);
    abort();
}

void cc_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "cicada: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}

void *cc_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *cc_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *cc_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *cc_xstrdup(const char *s)
{
    return cc_xstrndup(s, strlen(s));
}

char *cc_xstrndup(const char *s, size_t n)
{
    char *d = cc_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void cc_free(void *p)
{
    free(p);
}

void cc_grow(void **buf, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 8;
    while (n < need)
        n *= 2;
    *buf = cc_xrealloc(*buf, n * size);
    *cap = n;
}
