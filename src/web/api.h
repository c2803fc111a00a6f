/* SPDX-License-Identifier: MIT */
/*
 * api.h: what the web UI's endpoints answer, built from a view of the run. No I/O and no
 * state: the server (webui.c) decides when to build, caches and sends.
 *
 * The shapes are Locust's (reference/locust.md section 6) wherever Locust has the endpoint,
 * so that scripts written against Locust's web UI read ours unchanged.
 */
#ifndef CC_WEB_API_H
#define CC_WEB_API_H

#include "core/strbuf.h"
#include "runner/runner.h"

#include <jansson.h>

#define CC_API_MAX_ROWS 500 /* stats rows (then Aggregated) and failures in /stats/requests */

/*
 * /stats/requests: "stats" (entries sorted, at most CC_API_MAX_ROWS, then Aggregated), "errors",
 * "total_rps", "total_fail_per_sec" (as in Locust, the Aggregated row's *current* values),
 * "current_rps", "current_fail_per_sec", "fail_ratio", "current_response_time_percentiles",
 * "state", "user_count", "workers" and "worker_count". New reference.
 */
json_t *cc_api_stats_requests(const struct cc_runner_view *v);

/* /exceptions: {"exceptions": [{count, msg, traceback, nodes}]}, most frequent first, at most
 * |max| of them. New reference. */
json_t *cc_api_exceptions(const struct cc_agg *a, size_t max);

/*
 * Chart points [from, v->history_n) as {"start_time", "from", "n", "points": [[time_s, users,
 * rps, fail_per_s, p50_ms, p95_ms, avg_ms], ...]}. New reference.
 */
json_t *cc_api_history(const struct cc_runner_view *v, size_t from);

/* /metrics: the Prometheus text format (version 0.0.4). Caller frees; |*len| is its length. */
char *cc_api_metrics(const struct cc_runner_view *v, size_t *len);

/* Rounds |v| to 3 decimals (JSON numbers people read). */
double cc_api_round3(double v);

#endif
