/* SPDX-License-Identifier: MIT */
/*
 * cicada.h: the C API for modules that extend cicada.
 *
 * A module is an ordinary Lua C module (a shared object with a luaopen_<name> function) that a
 * cicadafile loads with require. It is built against this header and LuaJIT's, and links
 * against nothing of cicada's: the cicada executable exports these functions, and they
 * resolve when the module loads. A module finds it in the cicadafile's directory (?.so) or
 * anywhere on package.cpath.
 *
 * Every user runs on a worker thread's event loop. A module's Lua function that has to wait
 * (for the network, a timer, a thread) does not block: it starts the operation, then ends
 * with `return cicada_suspend(L, user, &wait)`, which parks the calling user and lets the
 * others run. When the operation completes, a callback on the same loop pushes the results
 * onto the user's Lua state and calls cicada_resume(); the Lua function then returns those
 * results to its caller. Nothing here locks: every function is called on the thread whose
 * loop the module runs on, except the work function given to cicada_offload().
 *
 * examples/plugin/ is a complete module (a memcached client); docs/extending.md explains
 * the contract.
 */
#ifndef CICADA_H
#define CICADA_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a function here changes incompatibly. */
#define CICADA_API_VERSION 1

/* The version of this API the running cicada implements. */
int cicada_api_version(void);

/* ---- the loop and its users --------------------------------------------------------------- */

/* The calling worker thread's libuv loop (NULL on a thread without one): for handles of the
 * module's own (uv_poll_t on a library's socket, uv_timer_t...). */
uv_loop_t *cicada_loop(void);

/* The calling worker thread's main Lua state (NULL on a thread without one). Users are
 * coroutines of it: use it for registry references (luaL_ref, luaL_unref) that may outlive
 * the user who made them. */
lua_State *cicada_lua(void);

/* A user, or an event listener, that can wait: a coroutine on the loop. */
typedef struct cicada_user cicada_user;

/*
 * An operation a user waits on, embedded in the module's own state. |cancel| is called if the
 * user is killed (the run ends) while it waits: it must make sure the operation never calls
 * cicada_resume() for this user, and must not call Lua. The operation may go on and clean up
 * by itself later.
 */
typedef struct cicada_wait {
    void (*cancel)(struct cicada_wait *w);
} cicada_wait;

/* The user running |L|. Raises a Lua error when |L| is not a user's or a listener's coroutine
 * (a module function called at load time, say), so call it before starting anything. */
cicada_user *cicada_user_current(lua_State *L);

/* The Lua state to push a waiting user's results onto, before cicada_resume(). */
lua_State *cicada_user_lua(cicada_user *u);

/*
 * Parks |u| (running |L|) on |w| and yields; use as `return cicada_suspend(L, u, &op->wait);`
 * as the last statement of a lua_CFunction. The values a later cicada_resume() passes become
 * the function's results. If the user was killed before it could park, |w|'s cancel runs at
 * once and the function returns the kill signal (which cicada's Lua code passes on).
 */
int cicada_suspend(lua_State *L, cicada_user *u, cicada_wait *w);

/*
 * Resumes |u| with the |nresults| values on top of cicada_user_lua(u). Call it from a loop
 * callback; called while another user runs (from inside a Lua call), the resume is deferred to
 * the next loop turn, so resumes never nest.
 */
void cicada_resume(cicada_user *u, int nresults);

/*
 * luaL_register() for a module's functions that may wait: sets each of |fns| (NULL-terminated)
 * in the table on top of |L|, wrapped so that when the user is killed while the function waits
 * (the run ends), its caller unwinds as from any other wait of cicada's, instead of getting
 * the kill signal back as a result. Register every function that calls cicada_suspend(),
 * cicada_sleep() or cicada_offload() with it; a method table given as __index is such a table.
 */
void cicada_register(lua_State *L, const luaL_Reg *fns);

/* Parks the calling user for |seconds| (0: until every other ready user ran once); use as
 * `return cicada_sleep(L, 0.5);`. */
int cicada_sleep(lua_State *L, double seconds);

/* ---- statistics --------------------------------------------------------------------------- */

/*
 * Records one request event of user |u| (NULL when no user made it): its type and name (the
 * statistics' row), the response time in milliseconds, the response length in bytes, and NULL
 * for a success or the failure's text (its error row). Call it on the user's thread, typically
 * just before cicada_resume(). Knowing the user lets open-model runs also measure the request
 * from when its iteration was meant to start (docs/load.md).
 */
void cicada_record(cicada_user *u, const char *request_type, const char *name,
                   double response_time_ms, uint64_t response_length, const char *error);

/* A monotonic clock in nanoseconds, for measuring response times. */
uint64_t cicada_now_ns(void);

/* ---- timers ------------------------------------------------------------------------------- */

typedef struct cicada_timer cicada_timer;

/*
 * Calls |cb|(t, arg) on the loop after |timeout_ms|, then every |repeat_ms| if that is not 0,
 * until cicada_timer_stop(). Never NULL.
 */
cicada_timer *cicada_timer_start(uint64_t timeout_ms, uint64_t repeat_ms,
                                 void (*cb)(cicada_timer *t, void *arg), void *arg);

/* Stops and frees |t|: its callback does not run again. Allowed inside the callback. */
void cicada_timer_stop(cicada_timer *t);

/* ---- blocking calls ----------------------------------------------------------------------- */

/*
 * Runs |work|(arg) on libuv's thread pool, for a blocking library call, while the calling
 * user waits (and only it). Then |done|(L, arg) runs on the loop, pushes the results onto
 * |L| and returns their count, and the user resumes with them. If the user is killed first,
 * |drop|(arg) (may be NULL) runs instead of |done| once |work| has returned. |work| must not
 * touch Lua or the loop. Use as `return cicada_offload(L, work, done, drop, arg);`. The pool
 * has UV_THREADPOOL_SIZE threads (4 unless set in the environment before cicada starts), shared
 * with name resolution.
 */
int cicada_offload(lua_State *L, void (*work)(void *arg), int (*done)(lua_State *L, void *arg),
                   void (*drop)(void *arg), void *arg);

/* ---- the transport: TCP and TLS connections ----------------------------------------------- */

typedef struct cicada_conn cicada_conn;

struct cicada_conn_opts {
    const char *host; /* a name or an IP address (resolved on the loop) */
    uint16_t port;
    bool tls;                    /* TLS over the TCP connection */
    bool insecure;               /* TLS: skip certificate verification */
    const char *ca_file;         /* TLS: trusted CAs (PEM) instead of the system's */
    const char *server_name;     /* TLS: SNI and the name to verify; NULL: |host| */
    uint32_t connect_timeout_ms; /* TCP connect and TLS handshake; 0: 60 s */
};

/* What a connection tells its owner; every callback runs on the loop, never from inside a
 * cicada_conn_* call, and none runs after cicada_conn_close(). */
struct cicada_conn_cbs {
    /* Connected (status 0), or failed (status < 0; cicada_conn_error() says why). After a
     * failure the owner closes the connection. */
    void (*on_connect)(cicada_conn *c, int status, void *data);
    /* |len| bytes received (decrypted), valid during the call only. */
    void (*on_read)(cicada_conn *c, const char *bytes, size_t len, void *data);
    /* The peer ended the stream (status 0) or it failed (status < 0). The owner closes it. */
    void (*on_end)(cicada_conn *c, int status, void *data);
    /* Optional (may be NULL): the queued output drained after cicada_conn_blocked(). */
    void (*on_drain)(cicada_conn *c, void *data);
};

/*
 * Starts connecting to |o->host|:|o->port|; |cbs| must outlive the connection (a static
 * table). Never NULL: every failure, a bad TLS option included, arrives through on_connect.
 * Everything in |o| is copied.
 */
cicada_conn *cicada_conn_open(const struct cicada_conn_opts *o, const struct cicada_conn_cbs *cbs,
                              void *data);

/* Sends |len| bytes (copied if the socket cannot take them at once). Returns 0, or a negative
 * code when the connection is not open or has failed (on_end then tells). */
int cicada_conn_write(cicada_conn *c, const void *bytes, size_t len);

/* Whether enough output is queued that the owner should wait for on_drain. */
bool cicada_conn_blocked(const cicada_conn *c);

/* Pauses and resumes on_read (for a owner that cannot take more yet). */
void cicada_conn_read_stop(cicada_conn *c);
void cicada_conn_read_start(cicada_conn *c);

/* The sentence describing the connection's last error, e.g. "connect to 127.0.0.1:11211
 * failed: connection refused"; "" if none. Valid until the next callback or the close. */
const char *cicada_conn_error(const cicada_conn *c);

/* Closes |c| at once (queued output is dropped) and frees it once its handles are closed; no
 * callback runs afterwards. Allowed inside any of its callbacks. */
void cicada_conn_close(cicada_conn *c);

#ifdef __cplusplus
}
#endif

#endif
