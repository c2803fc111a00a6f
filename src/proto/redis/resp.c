/* SPDX-License-Identifier: MIT */
/*
 * resp.c: RESP, Redis's protocol: commands out, replies in. Replies are parsed by hiredis's
 * reader with object functions of ours that build them in an arena, so that a reply costs no
 * allocation once the arena has grown, and so that every size a peer announces (a bulk string
 * of 2^40 bytes, an array of 2^31 elements) is checked against a cap before anything is
 * allocated for it.
 */
#include "proto/redis/redis.h"

#include <stdio.h>
#include <string.h>

/* ---- buffers and commands ------------------------------------------------------------------ */

void redis_buf_append(struct redis_buf *b, const void *s, size_t n)
{
    if (n == 0) return;
    if (b->len + n > b->cap) cc_grow((void **)&b->p, &b->cap, b->len + n, 1);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void redis_buf_free(struct redis_buf *b)
{
    cc_free(b->p);
    memset(b, 0, sizeof(*b));
}

/* "<c><n>\r\n" */
static void put_len(struct redis_buf *b, char c, size_t n)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof(tmp), "%c%zu\r\n", c, n);
    redis_buf_append(b, tmp, (size_t)k);
}

void resp_begin(struct redis_buf *b, size_t argc)
{
    put_len(b, '*', argc);
}

void resp_arg(struct redis_buf *b, const char *arg, size_t len)
{
    if (b->len + len + 40 > b->cap) cc_grow((void **)&b->p, &b->cap, b->len + len + 40, 1);
    put_len(b, '$', len);
    redis_buf_append(b, arg, len);
    redis_buf_append(b, "\r\n", 2);
}

/* ---- the arena ------------------------------------------------------------------------------ */

#define BLOCK_SIZE (16 * 1024)

struct redis_block {
    struct redis_block *next;
    size_t size, used;
    max_align_t data[];
};

static struct redis_block *block_new(size_t size)
{
    struct redis_block *b = cc_xmalloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

/* |n| bytes, 16-aligned, counted against the cap; NULL (and too_big) past it. */
static void *arena_alloc(struct redis_parser *p, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > p->max || p->used + n > p->max) {
        p->too_big = true;
        return NULL;
    }
    struct redis_block *b = p->blocks;
    if (b->size - b->used < n) {
        /* big items get a block of their own behind the current one, small ones a new head */
        if (n > BLOCK_SIZE / 4) {
            struct redis_block *big = block_new(n);
            big->next = b->next;
            b->next = big;
            big->used = n;
            p->used += n;
            return big->data;
        }
        struct redis_block *nb = block_new(BLOCK_SIZE);
        nb->next = b;
        p->blocks = b = nb;
    }
    void *r = (char *)b->data + b->used;
    b->used += n;
    p->used += n;
    return r;
}

void redis_parser_reset(struct redis_parser *p)
{
    /* one standard block stays for the next replies; the rest goes */
    struct redis_block *keep = NULL;
    for (struct redis_block *b = p->blocks, *next; b; b = next) {
        next = b->next;
        if (!keep && b->size == BLOCK_SIZE)
            keep = b;
        else
            cc_free(b);
    }
    if (!keep) keep = block_new(BLOCK_SIZE);
    keep->used = 0;
    keep->next = NULL;
    p->blocks = keep;
    p->used = 0;
}

/* ---- hiredis's object functions -------------------------------------------------------------- */

static struct redis_parser *parser_of(const redisReadTask *task)
{
    return task->privdata;
}

/* Puts |n| in its parent array, where hiredis expects the object functions to. */
static void *attach(const redisReadTask *task, struct redis_node *n)
{
    if (task->parent) {
        struct redis_node *parent = task->parent->obj;
        if (task->idx >= 0 && (size_t)task->idx < parent->n) parent->u.elem[task->idx] = n;
    }
    return n;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    struct redis_parser *p = parser_of(task);
    if (len > p->max) {
        p->too_big = true;
        return NULL;
    }
    struct redis_node *n = arena_alloc(p, sizeof(*n) + len + 1);
    if (!n) return NULL;
    n->type = task->type;
    n->n = len;
    n->u.str = (char *)(n + 1);
    memcpy(n->u.str, str, len);
    n->u.str[len] = '\0';
    return attach(task, n);
}

static void *create_array(const redisReadTask *task, int elements)
{
    struct redis_parser *p = parser_of(task);
    size_t count = elements > 0 ? (size_t)elements : 0;
    if (count > p->max / sizeof(struct redis_node *)) {
        p->too_big = true;
        return NULL;
    }
    struct redis_node *n = arena_alloc(p, sizeof(*n) + count * sizeof(struct redis_node *));
    if (!n) return NULL;
    n->type = REDIS_REPLY_ARRAY;
    n->n = count;
    n->u.elem = (struct redis_node **)(n + 1);
    /* hiredis fills the elements one by one; until then they read as nil */
    memset(n->u.elem, 0, count * sizeof(struct redis_node *));
    return attach(task, n);
}

static void *create_integer(const redisReadTask *task, long long v)
{
    struct redis_node *n = arena_alloc(parser_of(task), sizeof(*n));
    if (!n) return NULL;
    n->type = REDIS_REPLY_INTEGER;
    n->n = 0;
    n->u.integer = v;
    return attach(task, n);
}

static void *create_nil(const redisReadTask *task)
{
    struct redis_node *n = arena_alloc(parser_of(task), sizeof(*n));
    if (!n) return NULL;
    n->type = REDIS_REPLY_NIL;
    n->n = 0;
    n->u.str = NULL;
    return attach(task, n);
}

static void free_object(void *obj)
{
    (void)obj; /* the arena owns every node */
}

static redisReplyObjectFunctions object_fns = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = free_object,
};

/* ---- the parser ------------------------------------------------------------------------------ */

static void new_reader(struct redis_parser *p)
{
    p->reader = redisReaderCreateWithFunctions(&object_fns);
    if (!p->reader) cc_assert_fail("redisReaderCreateWithFunctions", __FILE__, __LINE__);
    p->reader->privdata = p;
}

void redis_parser_init(struct redis_parser *p, size_t max)
{
    memset(p, 0, sizeof(*p));
    p->max = max ? max : REDIS_DEFAULT_MAX_REPLY;
    p->blocks = block_new(BLOCK_SIZE);
    new_reader(p);
}

void redis_parser_release(struct redis_parser *p)
{
    if (p->reader) redisReaderFree(p->reader);
    p->reader = NULL;
    for (struct redis_block *b = p->blocks, *next; b; b = next) {
        next = b->next;
        cc_free(b);
    }
    p->blocks = NULL;
}

void redis_parser_restart(struct redis_parser *p)
{
    redisReaderFree(p->reader);
    new_reader(p);
    redis_parser_reset(p);
    p->too_big = false;
    p->error[0] = '\0';
}

static int fail_too_big(struct redis_parser *p)
{
    snprintf(p->error, sizeof(p->error), "a reply exceeds max_reply (%zu bytes)", p->max);
    p->too_big = true;
    return -1;
}

int redis_parser_feed(struct redis_parser *p, const char *data, size_t len)
{
    if (p->too_big) return -1;
    if (redisReaderFeed(p->reader, data, len) != REDIS_OK) {
        snprintf(p->error, sizeof(p->error), "protocol error: %s", p->reader->errstr);
        return -1;
    }
    return 0;
}

int redis_parser_next(struct redis_parser *p, struct redis_node **out)
{
    if (p->too_big) return p->error[0] ? -1 : fail_too_big(p);
    void *reply = NULL;
    if (redisReaderGetReply(p->reader, &reply) != REDIS_OK) {
        if (p->too_big) return fail_too_big(p);
        snprintf(p->error, sizeof(p->error), "protocol error: %s", p->reader->errstr);
        return -1;
    }
    if (!reply) {
        /* what the reader holds unparsed is one reply still arriving (or garbage with no line
         * end): past the cap, it will not fit */
        redisReader *r = p->reader;
        if (r->len - r->pos > p->max) return fail_too_big(p);
        return 0;
    }
    *out = reply;
    return 1;
}

size_t redis_node_bytes(const struct redis_node *n)
{
    if (!n) return 0;
    switch (n->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        return n->n;
    case REDIS_REPLY_ARRAY: {
        size_t s = 0;
        for (size_t i = 0; i < n->n; i++)
            s += redis_node_bytes(n->u.elem[i]);
        return s;
    }
    default:
        return 0;
    }
}
