/* SPDX-License-Identifier: MIT */
/*
 * testcmd.h: `cicada test FILE`, a file of test functions run once each as functional tests,
 * with TAP and JUnit XML results. The tests themselves run in lua/cicada/testing.lua.
 */
#ifndef CC_TESTCMD_H
#define CC_TESTCMD_H

/* Runs `cicada test ...` (|argv[0]| is "test"); returns the process exit code: 0 when every
 * test passed (or was skipped), 1 otherwise, 2 for a bad command line. */
int cc_test_main(int argc, char **argv, const char *lua_dir);

#endif
