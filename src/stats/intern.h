/* SPDX-License-Identifier: MIT */
/*
 * intern.h: a table that gives each distinct tuple of up to three strings one immutable key
 * with a dense id (0, 1, 2...). Stats entries are keyed by (type, name), failures by
 * (method, name, error), exceptions by (message, traceback).
 *
 * Keys live until the table is released, so a pointer to one can be handed to another thread
 * and read there without copying. Only the owning thread looks keys up.
 */
#ifndef CC_INTERN_H
#define CC_INTERN_H

#include "core/common.h"

#define CC_INTERN_PARTS 3

struct cc_ikey {
    uint32_t id; /* dense, in order of first lookup */
    uint32_t nparts;
    uint64_t hash;
    const char *part[CC_INTERN_PARTS]; /* NUL-terminated copies */
    uint32_t len[CC_INTERN_PARTS];
};

struct cc_intern {
    struct cc_ikey **slots; /* open addressing, power-of-two size */
    size_t nslots;
    struct cc_ikey **keys; /* by id */
    size_t count, cap;
};

void cc_intern_init(struct cc_intern *t);
void cc_intern_release(struct cc_intern *t);

uint64_t cc_intern_hash(const char *const *part, const size_t *len, unsigned nparts);

/* Finds the key for the tuple, or NULL. */
const struct cc_ikey *cc_intern_find(const struct cc_intern *t, const char *const *part,
                                     const size_t *len, unsigned nparts, uint64_t hash);

/* Finds the key for the tuple, adding a copy when it is new (*|added| set then, if given). */
const struct cc_ikey *cc_intern_get(struct cc_intern *t, const char *const *part, const size_t *len,
                                    unsigned nparts, uint64_t hash, bool *added);

/* Looks up another table's key in |t|. */
const struct cc_ikey *cc_intern_get_key(struct cc_intern *t, const struct cc_ikey *k, bool *added);

static inline const struct cc_ikey *cc_intern_get2(struct cc_intern *t, const char *a, size_t alen,
                                                   const char *b, size_t blen)
{
    const char *p[2] = {a, b};
    size_t l[2] = {alen, blen};
    return cc_intern_get(t, p, l, 2, cc_intern_hash(p, l, 2), NULL);
}

#endif
