/* SPDX-License-Identifier: MIT */
/* mq.c: the mutex-and-async control queue; see mq.h. */
#include "core/mq.h"

#include <string.h>

void cc_mq_init(struct cc_mq *q, uv_async_t *wake)
{
    memset(q, 0, sizeof(*q));
    CC_ASSERT(uv_mutex_init(&q->lock) == 0);
    q->wake = wake;
}

void cc_mq_release(struct cc_mq *q)
{
    uv_mutex_destroy(&q->lock);
    cc_free(q->items);
    q->items = NULL;
}

void cc_mq_push(struct cc_mq *q, const struct cc_msg *m)
{
    uv_mutex_lock(&q->lock);
    cc_grow((void **)&q->items, &q->cap, q->n + 1, sizeof(*q->items));
    q->items[q->n++] = *m;
    uv_mutex_unlock(&q->lock);
    uv_async_send(q->wake);
}

size_t cc_mq_take(struct cc_mq *q, struct cc_msg **out, size_t *cap)
{
    uv_mutex_lock(&q->lock);
    struct cc_msg *items = q->items;
    size_t n = q->n, c = q->cap;
    q->items = *out;
    q->cap = *cap;
    q->n = 0;
    uv_mutex_unlock(&q->lock);
    *out = items;
    *cap = c;
    return n;
}
