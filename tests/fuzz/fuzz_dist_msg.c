/* SPDX-License-Identifier: MIT */
/*
 * fuzz_dist_msg.c: the master/worker message decoder, both directions, and the statistics
 * decoder behind it (a stats message becomes a shard merged into an aggregate).
 */
#include "dist/msg.h"
#include "dist/stats_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void stats_into_agg(const struct cc_dmsg *m)
{
    struct cc_wire_keys keys;
    struct cc_shard shard;
    struct cc_agg agg;
    cc_wire_keys_init(&keys);
    cc_shard_init(&shard);
    cc_agg_init(&agg, true);
    cc_agg_open_interval(&agg, 1);
    if (cc_wire_decode_stats(m->u.stats.body, &keys, 1700000000.0, &shard, NULL, 0) == 0) {
        cc_agg_merge(&agg, &shard, 0);
        /* what the reports derive from it */
        double p[CC_NPERCENTILES];
        cc_entry_percentiles_ms(&agg.total, cc_percentiles, CC_NPERCENTILES, p);
        /* and back out as a stats message */
        struct cc_dbuf b;
        cc_dbuf_init(&b);
        struct cc_wire_report r = {
            .cicada_hist = true, .wall_now_s = 1700000001.0, .mono_now_ns = 2000000000};
        cc_wire_stats_msg(&b, &agg, &r, "fuzz");
        cc_dbuf_release(&b);
    }
    cc_agg_release(&agg);
    cc_shard_release(&shard);
    cc_wire_keys_release(&keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cc_dmsg m;
    if (cc_dmsg_decode(&m, data, size, CC_DMSG_TO_MASTER, NULL, 0) == 0) {
        if (m.type == CC_DMSG_STATS) stats_into_agg(&m);
        cc_dmsg_release(&m);
    }
    if (cc_dmsg_decode(&m, data, size, CC_DMSG_TO_WORKER, NULL, 0) == 0) cc_dmsg_release(&m);
    return 0;
}
