/* SPDX-License-Identifier: MIT */
/*
 * webui.h: the web UI of a run (the default when not --headless, as in Locust).
 *
 * It is served from the control thread's loop by httpd: the embedded front end (web/), Locust's
 * JSON and CSV endpoints with Locust's shapes, the HTML report, /metrics in Prometheus' text
 * format, and /stream, a server-sent-events stream that pushes the live statistics every
 * second. Every endpoint is behind --web-auth (HTTP basic authentication) when it is given,
 * and on HTTPS with --tls-cert/--tls-key. See docs/web-ui.md and docs/internals/webui.md.
 *
 * Everything runs on the control thread, like the runner it drives: no locks.
 */
#ifndef CC_WEBUI_H
#define CC_WEBUI_H

#include "core/options.h"
#include "runner/runner.h"

#include <uv.h>

struct cc_webui;

/*
 * Starts the UI of |r| on |loop| (both borrowed; they outlive the UI) as |o| says (--web-host,
 * --web-port, --web-auth, --tls-cert/--tls-key), logs "Starting web interface at URL" and
 * starts keeping log lines for the Logs tab. Returns the UI, or NULL with a message in |err|
 * (caller frees) when the address is not usable, the port is taken, or the certificate or key
 * cannot be loaded.
 */
struct cc_webui *cc_webui_start(struct cc_runner *r, uv_loop_t *loop, const struct cc_options *o,
                                char **err);

/* The port the UI listens on (the real one when --web-port 0 was given). */
int cc_webui_port(const struct cc_webui *ui);

/*
 * Closes every connection (ending the event streams), stops keeping log lines, runs |loop|
 * until the UI's handles are closed, and frees |ui| (NULL is fine). Call it from the loop's
 * thread when uv_run() is not running, before the loop's other handles are closed.
 */
void cc_webui_free(struct cc_webui *ui);

#endif
