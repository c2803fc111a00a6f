/* SPDX-License-Identifier: MIT */
/*
 * proc.c: programs started under a guard that ends their whole process group when cicada lets
 * go of them or dies. See proc.h.
 *
 * The guard is a fork of a multi-threaded process, so until it execs (rm at the very end) it
 * calls only async-signal-safe functions: everything it needs (the program's path, argv, the
 * file descriptors) is prepared before the fork.
 */
#define _GNU_SOURCE
#include "proto/browser/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_GRACE_MS 2000
#define POLL_MS          250 /* how often the guard looks at its program while waiting */

/* ---- the guard (after fork: async-signal-safe calls only) ------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void set_signals(void (*action)(int), const int *sigs, size_t n)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = action;
    for (size_t i = 0; i < n; i++)
        sigaction(sigs[i], &sa, NULL);
}

/* Closes every descriptor from 3 up except |keep_a| and |keep_b|. */
static void close_others(int keep_a, int keep_b)
{
    int lo = keep_a < keep_b ? keep_a : keep_b, hi = keep_a < keep_b ? keep_b : keep_a;
    unsigned ranges[3][2] = {
        {3, (unsigned)lo - 1}, {(unsigned)lo + 1, (unsigned)hi - 1}, {(unsigned)hi + 1, ~0u}};
    for (int i = 0; i < 3; i++) {
        if (ranges[i][0] > ranges[i][1]) continue;
        if (syscall(SYS_close_range, ranges[i][0], ranges[i][1], 0) == 0) continue;
        /* kernels before 5.9: one by one, up to the limit cicada raises itself to */
        unsigned end = ranges[i][1] > 65536 ? 65536 : ranges[i][1];
        for (unsigned fd = ranges[i][0]; fd <= end; fd++)
            close((int)fd);
    }
}

/* Whether process group |pg| has no member left. */
static bool group_gone(pid_t pg)
{
    return kill(-pg, 0) == -1 && errno == ESRCH;
}

static const int GUARD_IGNORES[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2};

CC_NORETURN static void guard_main(const char *path, char *const *argv, char *const *envp, int ctl,
                                   int back, int logfd, int nullfd, char *const *rm_argv,
                                   unsigned grace_ms)
{
    /* Handlers inherited from cicada (libuv's signal pipe) must not run here. */
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(s, &sa, NULL);
    }
    /* The guard outlives signals meant for cicada (a Ctrl-C reaches its process group); only
     * the pipe ends it, so that it always gets to clean up. */
    set_signals(SIG_IGN, GUARD_IGNORES, CC_ARRAY_LEN(GUARD_IGNORES));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    dup2(nullfd, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
    close_others(ctl, back);

    pid_t c = fork();
    if (c == -1) _exit(126);
    if (c == 0) {
        setpgid(0, 0);
        set_signals(SIG_DFL, GUARD_IGNORES, CC_ARRAY_LEN(GUARD_IGNORES));
        close(ctl);
        close(back);
        execve(path, argv, envp);
        _exit(127);
    }
    setpgid(c, c); /* also here, so the group exists whichever runs first */
    ssize_t w;
    do {
        w = write(back, &c, sizeof(c));
    } while (w == -1 && errno == EINTR);
    close(back);

    /* Until cicada closes the pipe (or dies), or the program ends by itself. */
    bool reaped = false;
    for (;;) {
        struct pollfd pfd = {.fd = ctl, .events = POLLIN};
        int r = poll(&pfd, 1, POLL_MS);
        if (r > 0) {
            char b[16];
            ssize_t n = read(ctl, b, sizeof(b));
            if (n == 0 || (n == -1 && errno != EINTR && errno != EAGAIN)) break;
        } else if (r == -1 && errno != EINTR) {
            break;
        }
        int st;
        if (waitpid(c, &st, WNOHANG) == c) {
            reaped = true;
            break;
        }
    }
    close(ctl);

    /* End the group politely, then not. */
    kill(-c, SIGTERM);
    for (unsigned waited = 0; waited < grace_ms; waited += 10) {
        int st;
        if (!reaped && waitpid(c, &st, WNOHANG) == c) reaped = true;
        if (reaped && group_gone(c)) break;
        sleep_ms(10);
    }
    kill(-c, SIGKILL);
    if (!reaped) {
        int st;
        while (waitpid(c, &st, 0) == -1 && errno == EINTR) {
        }
    }
    /* members that were not our children are reaped by init; give it a moment */
    for (int i = 0; i < 100 && !group_gone(c); i++)
        sleep_ms(10);

    if (rm_argv) execve("/bin/rm", rm_argv, environ);
    _exit(0);
}

/* ---- cicada's side ----------------------------------------------------------------------- */

/* cicada's environment with the "NAME=value" strings of |set| replacing or adding to it: a new
 * array (caller frees) of strings it does not own. */
static char **env_with(const char *const *set)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (set[m])
        m++;
    char **env = cc_xcalloc(n + m + 1, sizeof(char *));
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strcspn(environ[i], "=");
        bool replaced = false;
        for (size_t k = 0; k < m && !replaced; k++)
            replaced = strncmp(set[k], environ[i], kl) == 0 && set[k][kl] == '=';
        if (!replaced) env[j++] = environ[i];
    }
    for (size_t k = 0; k < m; k++)
        env[j++] = (char *)set[k];
    return env;
}

/* The executable |name| names: itself when it has a slash, else the first on $PATH. */
static char *find_program(const char *name)
{
    if (strchr(name, '/')) return access(name, X_OK) == 0 ? cc_xstrdup(name) : NULL;
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    size_t nl = strlen(name);
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t dl = end ? (size_t)(end - p) : strlen(p);
        char *full = cc_xmalloc(dl + nl + 2);
        memcpy(full, dl ? p : ".", dl ? dl : 1);
        size_t off = dl ? dl : 1;
        full[off] = '/';
        memcpy(full + off + 1, name, nl + 1);
        struct stat st;
        if (access(full, X_OK) == 0 && stat(full, &st) == 0 && S_ISREG(st.st_mode)) return full;
        cc_free(full);
        if (!end) break;
        p = end + 1;
    }
    errno = ENOENT;
    return NULL;
}

int cc_proc_start(struct cc_proc *p, const struct cc_proc_opts *o)
{
    memset(p, 0, sizeof(*p));
    p->ctl = -1;
    char *path = find_program(o->path);
    if (!path) return -(errno ? errno : ENOENT);
    int rc = 0;
    int ctl[2] = {-1, -1}, back[2] = {-1, -1}, logfd = -1, nullfd = -1;
    char *rm_argv[5] = {"rm", "-rf", "--", (char *)o->scratch, NULL};
    char **envp = o->env ? env_with(o->env) : environ;
    if (pipe2(ctl, O_CLOEXEC) == -1 || pipe2(back, O_CLOEXEC) == -1) goto fail_errno;
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd == -1) goto fail_errno;
    logfd = o->log ? open(o->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : nullfd;
    if (logfd == -1) goto fail_errno;

    pid_t g = fork();
    if (g == -1) goto fail_errno;
    if (g == 0)
        guard_main(path, (char *const *)o->argv, envp, ctl[0], back[1], logfd, nullfd,
                   o->scratch ? rm_argv : NULL, o->grace_ms ? o->grace_ms : DEFAULT_GRACE_MS);

    close(ctl[0]);
    close(back[1]);
    ctl[0] = back[1] = -1;
    pid_t pid = 0;
    ssize_t n;
    do {
        n = read(back[0], &pid, sizeof(pid));
    } while (n == -1 && errno == EINTR);
    close(back[0]);
    back[0] = -1;
    p->guard = g;
    p->ctl = ctl[1];
    ctl[1] = -1;
    if (n != (ssize_t)sizeof(pid) || pid <= 0) { /* the guard could not fork the program */
        cc_proc_stop(p);
        cc_proc_wait(p);
        rc = -EAGAIN;
        goto out;
    }
    p->pid = pid;
    goto out;

fail_errno:
    rc = -errno;
out:
    for (int i = 0; i < 2; i++) {
        if (ctl[i] != -1) close(ctl[i]);
        if (back[i] != -1) close(back[i]);
    }
    if (logfd != -1 && logfd != nullfd) close(logfd);
    if (nullfd != -1) close(nullfd);
    if (envp != environ) cc_free(envp);
    cc_free(path);
    return rc;
}

void cc_proc_poll(struct cc_proc *p)
{
    if (p->reaped || p->guard <= 0) return;
    int st;
    pid_t r = waitpid(p->guard, &st, WNOHANG);
    if (r == p->guard || (r == -1 && errno == ECHILD)) {
        p->reaped = true;
        p->status = r == p->guard ? st : 0;
    }
}

bool cc_proc_alive(struct cc_proc *p)
{
    cc_proc_poll(p);
    if (p->reaped || p->guard <= 0) return false;
    /* the guard notices its program's end within POLL_MS; the program may be a zombie until */
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)p->pid);
    FILE *f = fopen(path, "re");
    if (!f) return kill(p->pid, 0) == 0;
    char buf[256];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')'); /* the state follows the command name */
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

void cc_proc_stop(struct cc_proc *p)
{
    if (p->ctl != -1) close(p->ctl);
    p->ctl = -1;
}

void cc_proc_wait(struct cc_proc *p)
{
    if (p->reaped || p->guard <= 0) return;
    int st;
    pid_t r;
    do {
        r = waitpid(p->guard, &st, 0);
    } while (r == -1 && errno == EINTR);
    p->reaped = true;
    p->status = r == p->guard ? st : 0;
}

char *cc_proc_mkdtemp(const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    size_t n = strlen(tmp) + strlen(prefix) + 8;
    char *dir = cc_xmalloc(n + 1);
    snprintf(dir, n + 1, "%s/%sXXXXXX", tmp, prefix);
    if (!mkdtemp(dir)) {
        int e = errno;
        cc_free(dir);
        errno = e;
        return NULL;
    }
    return dir;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r == -1 && errno != ENOENT ? errno : 0;
}

int cc_proc_rmtree(const char *path)
{
    int r = nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (r == -1) return errno == ENOENT ? 0 : -errno;
    return r > 0 ? -r : 0;
}
