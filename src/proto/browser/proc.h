/* SPDX-License-Identifier: MIT */
/*
 * proc.h: programs cicada starts and must never leave behind (chromedriver, Chromium).
 *
 * Each program runs under a guard: a small forked copy of cicada that puts the program in a
 * process group of its own and watches a pipe from cicada. When cicada closes the pipe (the
 * program is stopped, the vm closes), or dies in any way (a second SIGINT, SIGKILL, a crash),
 * the pipe reaches end of file and the guard ends the whole group: SIGTERM, a grace period,
 * then SIGKILL. It then removes the program's scratch directory and exits. Everything a
 * browser forks (renderers, the GPU and network services, chromedriver's Chromium) stays in
 * that group, so nothing survives it. The group is also out of the terminal's reach: a
 * Ctrl-C goes to cicada alone, which closes its sessions first.
 *
 * The guard is reaped by cicada: at once when asked whether the program is alive, or when the
 * vm closes (cc_proc_close_all() waits for every guard).
 */
#ifndef CC_PROC_H
#define CC_PROC_H

#include "core/common.h"

#include <sys/types.h>

struct cc_proc {
    pid_t guard; /* the guard's pid; 0 once reaped */
    pid_t pid;   /* the program's pid (its process group) */
    int ctl;     /* the write end of the guard's pipe; -1 once closed */
    int status;  /* the guard's wait status once reaped */
    bool reaped;
};

struct cc_proc_opts {
    const char *path;        /* the program: absolute, or found on $PATH */
    const char *const *argv; /* argv[0] first, NULL-terminated */
    const char *log;         /* a file for the program's stdout and stderr, or NULL: /dev/null */
    const char *scratch;     /* a directory the guard removes when the program ends, or NULL */
    const char *const *env;  /* "NAME=value" strings set for the program, NULL-terminated, over
                                cicada's environment; NULL: cicada's environment as it is */
    unsigned grace_ms;       /* between SIGTERM and SIGKILL; 0: 2000 */
};

/*
 * Starts the program under its guard. Returns 0, or a negative errno (the path is not an
 * executable, fork failed...) with nothing started. Blocks only for the fork and one read of
 * the program's pid from the guard.
 */
int cc_proc_start(struct cc_proc *p, const struct cc_proc_opts *o);

/* Whether the program still runs. A guard that has exited is reaped here. */
bool cc_proc_alive(struct cc_proc *p);

/* Asks the guard to end the program (closes the pipe); returns at once. Idempotent. */
void cc_proc_stop(struct cc_proc *p);

/* Waits for the guard to finish (after cc_proc_stop). Blocks up to the grace period. */
void cc_proc_wait(struct cc_proc *p);

/* Reaps the guard if it has exited, without blocking. */
void cc_proc_poll(struct cc_proc *p);

/* Creates a fresh private directory "<$TMPDIR or /tmp>/<prefix>XXXXXX". Returns a new string
 * (caller frees) or NULL with errno set. */
char *cc_proc_mkdtemp(const char *prefix);

/* Removes |path| and everything under it, not following symbolic links. Returns 0 or -errno. */
int cc_proc_rmtree(const char *path);

#endif
