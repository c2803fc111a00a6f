/* SPDX-License-Identifier: MIT */
/*
 * dispatch.h: which user class the next user is, and which worker thread runs it.
 *
 * Classes with a fixed_count come first, in script order, until they have their count. Then
 * each new user goes to the weighted class furthest below its share, so at every user count
 * the mix is as close to the weights as whole users allow. A user goes to the worker with the
 * fewest users of its class (then the fewest users). Every assignment is logged, so lowering
 * the count removes the most recently added users first.
 */
#ifndef CC_DISPATCH_H
#define CC_DISPATCH_H

#include "core/common.h"

struct cc_dispatch_entry {
    uint32_t cls;
    uint32_t worker;
    bool gone; /* removed out of order (a class no longer allowed); skipped by LIFO removal */
};

struct cc_dispatch {
    uint32_t nclasses, nworkers;
    double *weight;                /* [class] */
    uint32_t *fixed;               /* [class] fixed_count, 0 for weighted classes */
    uint32_t *count;               /* [class] users assigned */
    uint32_t *wcount;              /* [worker * nclasses + class] */
    uint32_t *wtotal;              /* [worker] */
    bool *allowed;                 /* [class] may get users (a load shape's stage may narrow it) */
    struct cc_dispatch_entry *log; /* assignments in order */
    size_t nlog, cap;
    size_t live;       /* entries of the log not gone */
    size_t **by_class; /* [class] positions in the log, in order, of its live users */
    size_t *nby, *capby;
};

void cc_dispatch_init(struct cc_dispatch *d, uint32_t nclasses, const double *weight,
                      const uint32_t *fixed, uint32_t nworkers);
void cc_dispatch_release(struct cc_dispatch *d);

/* Forgets every assignment (all users have stopped). */
void cc_dispatch_clear(struct cc_dispatch *d);

/* Users assigned now. */
static inline size_t cc_dispatch_total(const struct cc_dispatch *d)
{
    return d->live;
}

/* Which classes may get users (NULL: all). A class no longer allowed keeps its users until
 * cc_dispatch_remove_class() takes them. */
void cc_dispatch_set_allowed(struct cc_dispatch *d, const bool *allowed);
/* A class that has users but is not allowed any, or -1. */
int cc_dispatch_disallowed(const struct cc_dispatch *d);
/* Takes back the most recent user of class |cls| into *|out|; false when it has none. */
bool cc_dispatch_remove_class(struct cc_dispatch *d, uint32_t cls, struct cc_dispatch_entry *out);

/*
 * Assigns one more user: its class and worker in *|out|. Returns false when no class can take
 * another user (only fixed_count classes, all full).
 */
bool cc_dispatch_add(struct cc_dispatch *d, struct cc_dispatch_entry *out);
/* Assigns one more user of class |cls| whatever the weights (a distributed worker runs the
 * counts its master decided): its worker in *|out|. */
void cc_dispatch_add_class(struct cc_dispatch *d, uint32_t cls, struct cc_dispatch_entry *out);
/* Takes back the most recent assignment into *|out|; false when there is none. */
bool cc_dispatch_remove(struct cc_dispatch *d, struct cc_dispatch_entry *out);

#endif
