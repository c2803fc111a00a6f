/* SPDX-License-Identifier: MIT */
/*
 * runner.h: a local run, driven from the control thread: load the script, start the worker
 * threads, ramp users up and down, merge statistics every second, report, and stop on run
 * time, StopTest or a signal.
 */
#ifndef CC_RUNNER_H
#define CC_RUNNER_H

#include "core/options.h"

/* Runs the test |o| describes and returns the process exit code. |lua_dir| holds cicada/. */
int cc_run(const struct cc_options *o, const char *lua_dir);

#endif
