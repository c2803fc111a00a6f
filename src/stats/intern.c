/* SPDX-License-Identifier: MIT */
/* intern.c: string-tuple interning with dense ids (open addressing, linear probing). */
#include "stats/intern.h"

#include <string.h>

void cc_intern_init(struct cc_intern *t)
{
    memset(t, 0, sizeof(*t));
}

void cc_intern_release(struct cc_intern *t)
{
    for (size_t i = 0; i < t->count; i++) {
        struct cc_ikey *k = t->keys[i];
        for (unsigned p = 0; p < k->nparts; p++)
            cc_free((void *)k->part[p]);
        cc_free(k);
    }
    cc_free(t->slots);
    cc_free(t->keys);
    cc_intern_init(t);
}

uint64_t cc_intern_hash(const char *const *part, const size_t *len, unsigned nparts)
{
    uint64_t h = CC_HASH_INIT;
    for (unsigned i = 0; i < nparts; i++) {
        h = cc_hash(h, part[i], len[i]);
        h = cc_hash(h, "\0", 1); /* ("ab","c") and ("a","bc") differ */
    }
    return h;
}

static bool key_equals(const struct cc_ikey *k, const char *const *part, const size_t *len,
                       unsigned nparts, uint64_t hash)
{
    if (k->hash != hash || k->nparts != nparts) return false;
    for (unsigned i = 0; i < nparts; i++)
        if (k->len[i] != len[i] || memcmp(k->part[i], part[i], len[i]) != 0) return false;
    return true;
}

const struct cc_ikey *cc_intern_find(const struct cc_intern *t, const char *const *part,
                                     const size_t *len, unsigned nparts, uint64_t hash)
{
    if (!t->nslots) return NULL;
    size_t mask = t->nslots - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const struct cc_ikey *k = t->slots[i];
        if (!k) return NULL;
        if (key_equals(k, part, len, nparts, hash)) return k;
    }
}

static void rehash(struct cc_intern *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 64;
    struct cc_ikey **slots = cc_xcalloc(n, sizeof(*slots));
    for (size_t i = 0; i < t->count; i++) {
        struct cc_ikey *k = t->keys[i];
        size_t j = k->hash & (n - 1);
        while (slots[j])
            j = (j + 1) & (n - 1);
        slots[j] = k;
    }
    cc_free(t->slots);
    t->slots = slots;
    t->nslots = n;
}

const struct cc_ikey *cc_intern_get(struct cc_intern *t, const char *const *part, const size_t *len,
                                    unsigned nparts, uint64_t hash, bool *added)
{
    CC_ASSERT(nparts <= CC_INTERN_PARTS);
    if (added) *added = false;
    const struct cc_ikey *found = cc_intern_find(t, part, len, nparts, hash);
    if (found) return found;

    if ((t->count + 1) * 4 > t->nslots * 3) rehash(t); /* keep the load under 3/4 */
    struct cc_ikey *k = cc_xcalloc(1, sizeof(*k));
    k->id = (uint32_t)t->count;
    k->nparts = nparts;
    k->hash = hash;
    for (unsigned i = 0; i < nparts; i++) {
        k->part[i] = cc_xstrndup(part[i], len[i]);
        k->len[i] = (uint32_t)len[i];
    }
    cc_grow((void **)&t->keys, &t->cap, t->count + 1, sizeof(*t->keys));
    t->keys[t->count++] = k;
    size_t mask = t->nslots - 1;
    size_t j = hash & mask;
    while (t->slots[j])
        j = (j + 1) & mask;
    t->slots[j] = k;
    if (added) *added = true;
    return k;
}

const struct cc_ikey *cc_intern_get_key(struct cc_intern *t, const struct cc_ikey *k, bool *added)
{
    size_t len[CC_INTERN_PARTS];
    for (unsigned i = 0; i < k->nparts; i++)
        len[i] = k->len[i];
    return cc_intern_get(t, k->part, len, k->nparts, k->hash, added);
}
