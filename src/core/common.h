/* SPDX-License-Identifier: MIT */
/* common.h: allocation that aborts on exhaustion, assertions, clocks and small helpers. */
#ifndef CC_COMMON_H
#define CC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <time.h>

#define CC_VERSION "0.1.0"

#define CC_LIKELY(x)    __builtin_expect(!!(x), 1)
#define CC_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define CC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CC_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define CC_MAX(a, b)    ((a) > (b) ? (a) : (b))

#define cc_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define CC_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define CC_NORETURN          __attribute__((noreturn))

/* Always-on assertion: cheap checks of invariants whose failure means a bug in cicada. */
#define CC_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (CC_UNLIKELY(!(cond))) cc_assert_fail(#cond, __FILE__, __LINE__);                       \
    } while (0)

CC_NORETURN void cc_assert_fail(const char *cond, const char *file, int line);

/*
 * cicada is a program, not a library: running out of memory ends it with a message rather
 * than threading an error through every caller. Input from peers never reaches these with an
 * unbounded size; buffers that grow from the network have their own caps.
 */
void *cc_xmalloc(size_t n);
void *cc_xcalloc(size_t count, size_t size);
void *cc_xrealloc(void *p, size_t n);
char *cc_xstrdup(const char *s);
char *cc_xstrndup(const char *s, size_t n);
void cc_free(void *p);

/* Grows *|buf| (of *|cap| elements of |size| bytes) to hold at least |need| elements. */
void cc_grow(void **buf, size_t *cap, size_t need, size_t size);

/* Monotonic clock in nanoseconds: for every duration cicada measures. */
static inline uint64_t cc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wall clock in seconds since the epoch: only for timestamps shown to people. */
static inline double cc_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 64-bit FNV-1a over |n| bytes, continuing from |h| (start with CC_HASH_INIT). */
#define CC_HASH_INIT 0xcbf29ce484222325ull
static inline uint64_t cc_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#endif
