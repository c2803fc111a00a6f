/* SPDX-License-Identifier: MIT */
/* demo.h: the "cicada demo-server" command, which serves the demo shop until a signal. */
#ifndef CC_DEMO_H
#define CC_DEMO_H

/*
 * Runs "demo-server [--host H] [--port P] [--threads N]" (|argv|[0] is "demo-server"). Prints
 * "listening on http://H:P" as the first line on stdout once every thread listens, then
 * serves until SIGINT or SIGTERM. Returns the exit status: 0, 1 when the server cannot start,
 * 2 for bad arguments.
 */
int cc_demo_server_main(int argc, char **argv);

#endif
