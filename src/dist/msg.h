/* SPDX-License-Identifier: MIT */
/*
 * msg.h: Locust's master/worker messages (reference/locust.md §7.2, §7.3).
 *
 * A message is a msgpack array of three: [type (str), data (any), node_id (str)]. The worker's
 * node_id is its own client id; the master puts the receiving worker's id there. Decoding is
 * strict about the types of the fields it reads and tolerant about optional ones (masters and
 * workers from Locust 2.12 to the current one, boomer, cicada); it never trusts a length or a
 * count from the peer: a message is first checked to be exactly one well-formed msgpack
 * object, at most CC_DMSG_MAX_DEPTH deep, whose containers claim no more elements than bytes
 * remain, before msgpack-c builds its tree. Anything malformed is an error (CC_EPROTO with a
 * reason), which the state machines turn into a reconnect.
 *
 * Encoding goes into a growable buffer (struct cc_dbuf); the bytes are then sent as one frame.
 * Everything here is plain data: no sockets, no loop.
 */
#ifndef CC_DIST_MSG_H
#define CC_DIST_MSG_H

#include "core/common.h"

#include <msgpack.h>

#define CC_DMSG_MAX_DEPTH   24            /* nesting of arrays and maps */
#define CC_DMSG_MAX_OBJECTS (4u << 20)    /* msgpack objects in one message */
#define CC_DMSG_MAX_BYTES   (64ull << 20) /* one message */

/* Which way a message travels: the same type name can mean different things. */
enum cc_dmsg_dir {
    CC_DMSG_TO_MASTER, /* sent by a worker */
    CC_DMSG_TO_WORKER, /* sent by the master */
};

enum cc_dmsg_type {
    CC_DMSG_CUSTOM = 0,   /* a type not known in this direction: data left raw */
    CC_DMSG_CLIENT_READY, /* w->m: version string, -1, or nil (pre-2.0) */
    CC_DMSG_ACK,          /* m->w: {"index": n} */
    CC_DMSG_HEARTBEAT,    /* w->m: {state, current_cpu_usage, current_memory_usage}; m->w: nil */
    CC_DMSG_SPAWNING,     /* w->m: nil */
    CC_DMSG_SPAWNING_COMPLETE, /* w->m: {user_classes_count, user_count}; m->w: {user_count} */
    CC_DMSG_SPAWN,             /* m->w: {timestamp, user_classes_count, host, stop_timeout, ...} */
    CC_DMSG_STATS,             /* w->m: {stats, stats_total, errors, user_classes_count, ...} */
    CC_DMSG_EXCEPTION,         /* w->m: {msg, traceback} */
    CC_DMSG_CLIENT_STOPPED,    /* w->m: nil */
    CC_DMSG_QUIT,              /* both: nil */
    CC_DMSG_LOGS,              /* w->m: {worker_id, logs: [lines]} (2.29+) */
    CC_DMSG_STOP,              /* m->w: nil */
    CC_DMSG_RECONNECT,         /* m->w: nil */
    CC_DMSG_LOCUSTFILE,        /* w->m: {version}; m->w: {locustfiles} or {error} (2.23+) */
    CC_DMSG_UPDATE_USER_CLASS, /* m->w: user class settings (2.25+) */
    CC_DMSG_TYPE_COUNT
};

/* Locust's name of |t| ("client_ready"...); "" for CC_DMSG_CUSTOM. */
const char *cc_dmsg_type_name(enum cc_dmsg_type t);

/* A {class name: count} map. */
struct cc_dcounts {
    size_t n;
    const char **names;
    uint64_t *counts;
};

struct cc_dmsg_arena;

/* A decoded message. Strings are NUL-terminated and live as long as the message. */
struct cc_dmsg {
    enum cc_dmsg_type type;
    enum cc_dmsg_dir dir;
    const char *type_name;      /* as received */
    const char *node_id;        /* NULL when the sender gave nil */
    const msgpack_object *data; /* the raw data object */
    union {
        struct {
            const char *version; /* NULL with -1 or nil */
            bool any_version;    /* -1: skip the version check (boomer, locust4j, cicada) */
            bool legacy;         /* nil or "": Locust calls this a pre-2.0 worker */
        } client_ready;
        struct {
            int64_t index;      /* -1 when absent (masters before 2.11) */
            const char *cicada; /* the master's cicada version, NULL from Locust */
        } ack;
        struct {
            const char *state; /* to master: "ready", "spawning", "running"... */
            double cpu;        /* percent */
            int64_t memory;    /* bytes; -1 when absent */
            const char *cicada;
        } heartbeat;
        struct {
            struct cc_dcounts classes; /* to master */
            bool has_classes;
            int64_t user_count; /* -1 when absent */
            const char *cicada; /* a cicada worker's version */
        } spawning_complete;
        struct {
            double timestamp;
            struct cc_dcounts classes; /* absolute target counts for this worker */
            const char *host;          /* NULL: None */
            double stop_timeout;
            bool has_stop_timeout;
            const msgpack_object *parsed_options; /* a map, or NULL */
            const char **tags;                    /* parsed_options["tags"] when a list */
            size_t ntags;
            bool has_tags;
            const char **exclude_tags;
            size_t nexclude_tags;
            bool has_exclude_tags;
        } spawn;
        struct {
            const msgpack_object *body; /* the whole data map, for stats_wire.h */
            struct cc_dcounts classes;
            bool has_classes;
            int64_t user_count; /* -1 when absent */
        } stats;
        struct {
            const char *msg;
            const char *traceback;
            uint64_t count; /* 1, or a cicada worker's "count" of identical exceptions */
        } exception;
        struct {
            const char *worker_id;
            const char **lines;
            size_t nlines;
        } logs;
        struct {
            const char *version; /* to master */
        } locustfile;
    } u;

    /* private */
    char *buf;
    msgpack_unpacked up;
    struct cc_dmsg_arena *arena;
};

/*
 * Decodes |len| bytes (copied) into |m|. Returns 0, then release |m| with cc_dmsg_release(); or
 * CC_EPROTO (with a reason in |err| when it is not NULL) or CC_ETOOBIG, and |m| holds nothing.
 */
int cc_dmsg_decode(struct cc_dmsg *m, const void *buf, size_t len, enum cc_dmsg_dir dir, char *err,
                   size_t errlen);
void cc_dmsg_release(struct cc_dmsg *m);

/* ---- reading msgpack objects (for stats_wire.c and the callbacks' users) ------------------ */

/* The value of string key |key| in |map| (a map object), or NULL. */
const msgpack_object *cc_mp_get(const msgpack_object *map, const char *key);
bool cc_mp_is_str(const msgpack_object *o);
bool cc_mp_is_nil(const msgpack_object *o);
/* A number (integer or float) as a double; false for other types. */
bool cc_mp_num(const msgpack_object *o, double *out);
/* An integer in [0, INT64_MAX]; false for other types and negative values. */
bool cc_mp_uint(const msgpack_object *o, uint64_t *out);
/* Compares a str object with a C string. */
bool cc_mp_str_eq(const msgpack_object *o, const char *s);

/* ---- encoding --------------------------------------------------------------------------- */

struct cc_dbuf {
    msgpack_sbuffer sb; /* sb.data, sb.size: the packed bytes */
    msgpack_packer pk;  /* packs into sb */
};

void cc_dbuf_init(struct cc_dbuf *b);
void cc_dbuf_release(struct cc_dbuf *b);
/* Forgets the bytes, keeping the memory. */
void cc_dbuf_clear(struct cc_dbuf *b);

/* Packs a C string, or nil for NULL. */
void cc_mp_pack_str(msgpack_packer *pk, const char *s);

/*
 * Starts a message: the array header and |type|. Pack exactly one object (the data) with
 * b->pk, then finish with cc_dmsg_end(), which packs |node_id| (nil for NULL).
 */
void cc_dmsg_begin(struct cc_dbuf *b, const char *type);
void cc_dmsg_end(struct cc_dbuf *b, const char *node_id);

/* Whole messages, appended to |b|. */
void cc_dmsg_pack_empty(struct cc_dbuf *b, const char *type, const char *node_id);
/* |version| NULL sends -1 (no version check). */
void cc_dmsg_pack_client_ready(struct cc_dbuf *b, const char *version, const char *node_id);
/* |cicada| (may be NULL) tells a cicada worker that its master is cicada. */
void cc_dmsg_pack_ack(struct cc_dbuf *b, uint64_t index, const char *cicada, const char *node_id);
void cc_dmsg_pack_heartbeat(struct cc_dbuf *b, const char *state, double cpu, uint64_t memory,
                            const char *cicada, const char *node_id);
/* The worker's form: counts of |n| classes and the total; |cicada| (may be NULL) as in acks. */
void cc_dmsg_pack_spawning_complete(struct cc_dbuf *b, size_t n, const char *const *names,
                                    const uint32_t *counts, const char *cicada,
                                    const char *node_id);
/* The master's broadcast (2.29+): {"user_count": n}. */
void cc_dmsg_pack_all_spawned(struct cc_dbuf *b, uint64_t user_count, const char *node_id);

struct cc_dspawn {
    double timestamp; /* must grow from one spawn message to the next */
    size_t nclasses;
    const char *const *names;
    const uint32_t *counts; /* absolute */
    const char *host;       /* NULL: None */
    double stop_timeout;
    bool has_stop_timeout; /* false: None */
    const void *options;   /* parsed_options as one packed msgpack map; NULL: {} */
    size_t options_len;
};
void cc_dmsg_pack_spawn(struct cc_dbuf *b, const struct cc_dspawn *s, const char *node_id);

/* |count| above 1 adds a "count" field that only a cicada master reads. */
void cc_dmsg_pack_exception(struct cc_dbuf *b, const char *msg, const char *traceback,
                            uint64_t count, const char *node_id);
void cc_dmsg_pack_logs(struct cc_dbuf *b, const char *worker_id, const char *const *lines, size_t n,
                       const char *node_id);
/* |data| is one packed msgpack object (|len| bytes), or NULL for nil. */
void cc_dmsg_pack_raw(struct cc_dbuf *b, const char *type, const void *data, size_t len,
                      const char *node_id);

/* One entry of parsed_options (the spawn message's copy of the master's options). */
enum cc_dopt_type {
    CC_DOPT_NIL,
    CC_DOPT_STR,
    CC_DOPT_INT,
    CC_DOPT_NUM,
    CC_DOPT_BOOL,
    CC_DOPT_LIST
};
struct cc_dopt {
    const char *key;
    enum cc_dopt_type type;
    const char *s;
    int64_t i;
    double d;
    bool b;
    const char *const *list; /* CC_DOPT_LIST: strings */
    size_t nlist;
};
/* Packs |n| options as one map (for cc_dspawn.options). */
void cc_dmsg_pack_options(msgpack_packer *pk, const struct cc_dopt *o, size_t n);

#endif
