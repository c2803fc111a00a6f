/* SPDX-License-Identifier: MIT */
/*
 * vm.h: a Lua state on a libuv loop, with the fibers that run in it.
 *
 * Every thread that runs Lua owns one vm: each worker thread (users), and the control thread
 * (events such as test_start, and the script's environment-level code). A fiber is a Lua
 * coroutine the vm schedules: a simulated user, or a system fiber that runs event listeners.
 * Anything that looks blocking in Lua (sleep, a request) registers a wait and yields; the
 * loop resumes the fiber when the wait completes. Lua is only ever entered through
 * lua_resume or lua_pcall, never lua_call, so a script error can never unwind C frames.
 */
#ifndef CC_VM_H
#define CC_VM_H

#include "core/common.h"
#include "stats/stats.h"

#include <lua.h>
#include <uv.h>

struct cc_vm;
struct cc_fiber;

enum cc_role { CC_ROLE_CONTROL, CC_ROLE_WORKER };

/*
 * A pending operation a fiber waits on. |cancel| is called when the fiber is killed while
 * waiting: it must detach the operation so it never resumes the fiber, and must not call Lua.
 */
struct cc_waiter {
    void (*cancel)(struct cc_waiter *w);
};

enum cc_fiber_state {
    CC_FIBER_NEW,      /* created, not yet run */
    CC_FIBER_READY,    /* queued to run on the next loop turn */
    CC_FIBER_RUNNING,  /* its coroutine is executing */
    CC_FIBER_SLEEPING, /* in the timer heap */
    CC_FIBER_WAITING,  /* waiting on |waiter| */
    CC_FIBER_DONE,
};

/* What the next resume passes to the fiber. */
enum cc_resume { CC_RESUME_NONE, CC_RESUME_KILL };

struct cc_fiber {
    lua_State *co; /* the coroutine */
    struct cc_vm *vm;
    int ref;              /* registry reference that keeps |co| alive */
    int32_t cls;          /* user class index, or -1 for a system fiber */
    uint32_t heap_idx;    /* position in the timer heap while sleeping */
    uint8_t state;        /* enum cc_fiber_state */
    uint8_t resume;       /* enum cc_resume */
    uint8_t in_wait_time; /* parked in wait_time: a graceful stop kills it at once */
    uint8_t stopping;     /* graceful stop requested: leave before the next task */
    uint8_t killed;       /* a kill was delivered */
    uint8_t nres;         /* values a waker pushed for the next resume (a deferred wake) */
    uint32_t resumes;     /* resumes so far; a zero wait_time yields only if none came since */
    uint32_t resumes_at_wait;
    uint8_t intended;     /* CC_INTENDED_*: how its requests count from their intended start */
    uint8_t fresh;        /* a user that has not yet waited for its first arrival */
    uint64_t intended_ns; /* the open-model iteration's start delay, or the pacing period */
    uint64_t wake_ns;     /* monotonic deadline while sleeping */
    struct cc_waiter *waiter;
    struct cc_fiber *prev, *next; /* the list of its class (or of system fibers) */
    void (*on_done)(struct cc_fiber *f, void *arg); /* system fibers: called when it ends */
    void *done_arg;
};

/* How a user's requests are also measured from when they were meant to start. */
enum cc_intended {
    CC_INTENDED_NONE,
    CC_INTENDED_OPEN,   /* open model: each iteration's start delay is added (intended_ns) */
    CC_INTENDED_PACING, /* pacing: a long response stands for the ones it held back, as
                           HdrHistogram's recordValueWithExpectedInterval (period intended_ns) */
};

/* An open-model user class on this thread: iterations arrive at |rate| per second, each run by
 * an idle user of the class, or dropped when none is idle. */
struct cc_arrival {
    double rate;    /* iterations per second this thread starts */
    uint64_t t0_ns; /* when the current rate began */
    uint64_t done;  /* arrivals since t0, started or dropped */
    uint32_t fresh; /* users still in on_start: an arrival waits for them rather than drop */
    struct cc_fiber **idle;
    size_t nidle, idle_cap;
};

struct cc_fiber_list {
    struct cc_fiber *head, *tail; /* in creation order; stops take the tail */
    uint32_t n;
};

/* What a vm tells its owner. Called from the loop, never from inside a resume. */
struct cc_vm_hooks {
    void (*users_changed)(struct cc_vm *vm);  /* a user started or ended */
    void (*stop_test)(struct cc_vm *vm);      /* a user raised StopTest */
    uint32_t (*user_count)(struct cc_vm *vm); /* users running in the whole run (control) */
};

/*
 * Per-vm state of a protocol module (its connection pools, resolver...), created on first use.
 * |close| runs when the vm closes, before its Lua state goes: it must close the module's handles
 * (their callbacks run as the loop winds down) and make what Lua still holds inert.
 */
enum cc_vm_ext_slot {
    CC_EXT_HTTP,
    CC_EXT_API,
    CC_EXT_WS,
    CC_EXT_PG,
    CC_EXT_KAFKA,
    CC_EXT_SOCKET,
    CC_EXT_MQTT,
    CC_EXT_REDIS,
    CC_EXT_BROWSER,
    CC_EXT_MAX
};

struct cc_vm_ext {
    void *state;
    void (*close)(struct cc_vm *vm, void *state);
};

struct cc_vm {
    uv_loop_t *loop;
    lua_State *L;
    enum cc_role role;
    int worker_index; /* -1 on the control thread */
    int threads;      /* worker threads in this run */
    struct cc_recorder *rec;
    const struct cc_vm_hooks *hooks;
    void *owner;

    int rt_ref; /* the Lua runtime table (lua/cicada/runtime.lua) */
    uint32_t nclasses;
    struct cc_fiber_list *lists; /* [nclasses] users by class, [nclasses] system fibers */
    uint32_t users;              /* live users */

    struct cc_fiber *current; /* the fiber being resumed */

    struct cc_fiber **heap; /* timer min-heap by wake_ns */
    size_t heap_n, heap_cap;
    uv_timer_t timer;
    uint64_t timer_due_ns; /* deadline the timer is armed for, 0 when idle */

    struct cc_fiber **ready; /* FIFO ring */
    size_t ready_head, ready_n, ready_cap;
    uv_idle_t idle;
    uv_prepare_t prepare;

    bool request_listeners; /* the script listens to events.request */
    bool listener_error;    /* a listener raised: exit code 2 unless failures decide it */
    int closing;            /* handles closed, waiting for their callbacks */

    struct cc_arrival *arrivals; /* [class] open-model schedules; NULL until one is set */
    uv_timer_t arrival_timer;
    uint64_t arrival_due_ns;

    struct cc_agg *agg; /* control only: the statistics, for scripts that read them */
    struct cc_vm_ext ext[CC_EXT_MAX];
};

/* The vm of the calling thread (set by cc_vm_init on that thread). */
extern _Thread_local struct cc_vm *cc_vm_self;

struct cc_vm_opts {
    enum cc_role role;
    int worker_index;
    int threads;
    const char *script;  /* the cicadafile */
    const char *lua_dir; /* where lua/cicada/ lives */
    const char *options; /* the parsed options as a Lua table constructor, for scripts */
    const char *host;    /* -H, or NULL */
    const char *tags;    /* -T, space or comma separated, or NULL */
    const char *exclude_tags;
    const char *classes; /* user classes chosen on the command line, space separated */
    uint64_t seed;       /* for math.random */
};

/*
 * Creates the Lua state on |loop| and loads the script. Returns 0, or -1 with a message that
 * names file and line in |err| (caller frees).
 */
int cc_vm_init(struct cc_vm *vm, uv_loop_t *loop, const struct cc_vm_opts *o,
               struct cc_recorder *rec, const struct cc_vm_hooks *hooks, void *owner, char **err);
/* Closes the loop handles; the vm is released once the loop has run their callbacks. */
void cc_vm_close(struct cc_vm *vm);
/* Frees the Lua state. Every fiber is discarded (waits cancelled, on_stop not run). */
void cc_vm_release(struct cc_vm *vm);

/* The state of module |slot| (NULL before it is set), and setting it with its close hook. */
static inline void *cc_vm_ext_get(struct cc_vm *vm, enum cc_vm_ext_slot slot)
{
    return vm->ext[slot].state;
}
void cc_vm_ext_set(struct cc_vm *vm, enum cc_vm_ext_slot slot, void *state,
                   void (*close)(struct cc_vm *vm, void *state));

/* Spawns |n| users of class |cls|; they start on the next loop turn. */
void cc_vm_spawn(struct cc_vm *vm, uint32_t cls, uint32_t n);
/* Stops up to |n| users of class |cls|, most recently spawned first. */
void cc_vm_stop_users(struct cc_vm *vm, uint32_t cls, uint32_t n, bool graceful);
/* Sets the open-model arrival rate of class |cls| on this thread (0 stops arrivals). */
void cc_vm_set_arrival_rate(struct cc_vm *vm, uint32_t cls, double rate);

/* Stops every user: gracefully (finish the task in hand) or by killing them now. */
void cc_vm_stop_all(struct cc_vm *vm, bool graceful);

/*
 * Runs the runtime function |fn| in a new system fiber with |nargs| arguments pushed on vm->L,
 * so listeners may block on I/O. |done| is called when the fiber ends.
 */
void cc_vm_call(struct cc_vm *vm, const char *fn, int nargs,
                void (*done)(struct cc_fiber *f, void *arg), void *arg);
/* cc_vm_call with the arguments taken from the top of |from| (a state of the same vm). */
struct cc_fiber *cc_vm_call_from(struct cc_vm *vm, lua_State *from, const char *fn, int nargs,
                                 void (*done)(struct cc_fiber *f, void *arg), void *arg);
/* Calls the runtime function |fn| with |nargs| arguments and |nres| results, in protected mode.
 * For code that must not block. Returns 0, or -1 after logging the error. */
int cc_vm_pcall(struct cc_vm *vm, const char *fn, int nargs, int nres);

/* ---- for code running inside a fiber (Lua C functions) ------------------------------------ */

/* The fiber running |L|; raises a Lua error when |L| is not a fiber's coroutine. */
struct cc_fiber *cc_fiber_check(lua_State *L);
/* Parks the fiber on |w| and yields; the waker pushes results and calls cc_fiber_resume. */
int cc_fiber_wait(lua_State *L, struct cc_fiber *f, struct cc_waiter *w);
/* Parks the fiber for |ns| nanoseconds (0: until the next loop turn) and yields. */
int cc_fiber_sleep(lua_State *L, struct cc_fiber *f, uint64_t ns);
/*
 * Resumes a waiting fiber with the |nargs| values its waker pushed on f->co. From the loop it
 * resumes at once; while another fiber runs (a waker called from inside a Lua call) it queues
 * the fiber to resume on the next loop turn, so resumes never nest.
 */
void cc_fiber_resume(struct cc_fiber *f, int nargs);
/* Parks an open-model user until its next iteration arrives, and yields. */
int cc_fiber_await_arrival(lua_State *L, struct cc_fiber *f);
/* Records a request made by the running fiber: the statistics, and the intended-start
 * histogram as the fiber measures it. */
void cc_vm_record(struct cc_vm *vm, const struct cc_ikey *key, uint64_t ns, uint64_t length,
                  const char *error, size_t error_len);
/* The same for a request of fiber |f| (NULL: none) recorded from outside it (a loop callback). */
void cc_vm_record_for(struct cc_vm *vm, struct cc_fiber *f, const struct cc_ikey *key, uint64_t ns,
                      uint64_t length, const char *error, size_t error_len);
/* Kills a fiber: its wait is cancelled and it resumes with the kill signal. */
void cc_fiber_kill(struct cc_fiber *f);

/* The sentinel a killed fiber resumes with (a light userdata). */
extern char cc_kill_sentinel;

#endif
