/* SPDX-License-Identifier: MIT */
/*
 * kafka_lua.c: `cicada.kafka.core`, the C half of the Kafka client in Lua: producers whose
 * produce() suspends the user until the delivery report, and consumers whose poll() suspends
 * it until a message. KafkaUser and the option handling are in lua/cicada/kafka.lua.
 */
#include "proto/kafka/kafka_lua.h"
#include "proto/kafka/kafka.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define PRODUCER_MT "cicada.kafka.producer"
#define CONSUMER_MT "cicada.kafka.consumer"

struct producer_ud {
    struct kafka_producer *p; /* the vm's: shared, closed with the vm */
};

struct consumer_ud {
    struct kafka_consumer *c;
};

/* ---- completions ------------------------------------------------------------------------ */

int kafka_lua_push_delivery(lua_State *L, const struct kafka_op *op)
{
    if (op->err) {
        lua_pushnil(L);
        lua_pushstring(L, rd_kafka_err2str(op->err));
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_pushinteger(L, op->dr_partition);
    lua_pushnumber(L, (lua_Number)op->dr_offset);
    return 3;
}

int kafka_lua_push_message(lua_State *L, struct kafka_consumer *c, rd_kafka_message_t *m)
{
    (void)c;
    lua_checkstack(L, 8);
    if (m->err) {
        lua_pushnil(L);
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            lua_pushliteral(L, "end of partition");
        } else {
            const char *why = rd_kafka_message_errstr(m);
            lua_pushstring(L, why && why[0] ? why : rd_kafka_err2str(m->err));
        }
        rd_kafka_message_destroy(m);
        return 2;
    }
    lua_createtable(L, 0, 8);
    lua_pushstring(L, m->rkt ? rd_kafka_topic_name(m->rkt) : "");
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, m->partition);
    lua_setfield(L, -2, "partition");
    lua_pushnumber(L, (lua_Number)m->offset);
    lua_setfield(L, -2, "offset");
    if (m->key) {
        lua_pushlstring(L, m->key, m->key_len);
        lua_setfield(L, -2, "key");
    }
    if (m->payload) {
        lua_pushlstring(L, m->payload, m->len);
        lua_setfield(L, -2, "value");
    }
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    if (ts >= 0) {
        lua_pushnumber(L, (lua_Number)ts);
        lua_setfield(L, -2, "timestamp"); /* milliseconds since the epoch */
    }
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        uint64_t ns;
        if (kafka_stamp_latency(hdrs, kafka_wall_ns(), &ns)) {
            lua_pushnumber(L, (lua_Number)ns / 1e6);
            lua_setfield(L, -2, "latency_ms");
        }
        /* headers as a table name -> value; a repeated name keeps its last value, and
         * header_list has them all in order */
        lua_createtable(L, 0, 4);
        lua_createtable(L, 4, 0);
        const char *name;
        const void *v;
        size_t n;
        for (size_t i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
            lua_createtable(L, 2, 0);
            lua_pushstring(L, name);
            lua_rawseti(L, -2, 1);
            if (v)
                lua_pushlstring(L, v, n);
            else
                lua_pushboolean(L, 0);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, -2, (int)i + 1);
            if (v)
                lua_pushlstring(L, v, n);
            else
                lua_pushboolean(L, 0);
            lua_setfield(L, -3, name);
        }
        lua_setfield(L, -3, "header_list");
        lua_setfield(L, -2, "headers");
    }
    rd_kafka_message_destroy(m);
    return 1;
}

/* ---- configuration ---------------------------------------------------------------------- */

/* The librdkafka settings in table |idx| (name = string value) as a NULL-terminated list of
 * pairs in |buf| (|max| entries); the strings are borrowed from the table. */
static const char **conf_pairs(lua_State *L, int idx, const char **buf, int max)
{
    int n = 0;
    if (lua_istable(L, idx)) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (n + 2 >= max) luaL_error(L, "too many Kafka settings");
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "Kafka settings are name = value pairs");
            if (lua_isboolean(L, -1)) {
                buf[n + 1] = lua_toboolean(L, -1) ? "true" : "false";
            } else if (lua_type(L, -1) == LUA_TSTRING) {
                buf[n + 1] = lua_tostring(L, -1); /* the table keeps it alive */
            } else {
                luaL_error(L, "Kafka setting %s: give a string (or a boolean)",
                           lua_tostring(L, -2));
            }
            buf[n] = lua_tostring(L, -2);
            n += 2;
            lua_pop(L, 1);
        }
    }
    buf[n] = NULL;
    buf[n + 1] = NULL;
    return buf;
}

/* ---- producers -------------------------------------------------------------------------- */

/* core.producer(signature, bootstrap, settings) -> the vm's producer for that configuration */
static int l_producer(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "Kafka clients live in cicada's threads");
    const char *sig = luaL_checkstring(L, 1);
    const char *bootstrap = luaL_checkstring(L, 2);
    const char *pairs[258];
    conf_pairs(L, 3, pairs, (int)CC_ARRAY_LEN(pairs));
    struct kafka_vm *kv = kafka_vm_get(vm);
    struct kafka_producer *p = NULL;
    for (p = kv->producers; p; p = p->next)
        if (strcmp(p->sig, sig) == 0) break;
    char err[512];
    if (!p) {
        rd_kafka_conf_t *conf = kafka_conf_new(bootstrap, pairs, err, sizeof(err));
        if (!conf) return luaL_error(L, "Kafka producer settings: %s", err);
        p = kafka_producer_get(kv, sig, conf, err, sizeof(err));
        if (!p) return luaL_error(L, "Kafka producer: %s", err);
    }
    struct producer_ud *u = lua_newuserdata(L, sizeof(*u));
    u->p = p;
    luaL_getmetatable(L, PRODUCER_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static struct kafka_producer *check_producer(lua_State *L)
{
    struct producer_ud *u = luaL_checkudata(L, 1, PRODUCER_MT);
    if (!u->p || u->p->closed) luaL_error(L, "this Kafka producer is closed");
    return u->p;
}

/* Adds the headers of table |idx| (checked by the caller) to |hdrs|: { name = value } or
 * { { name, value }, ... }; false is a null value. */
static void add_headers(lua_State *L, int idx, rd_kafka_headers_t *hdrs)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t vl = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
            rd_kafka_header_add(hdrs, lua_tostring(L, -2), -1, v, (ssize_t)vl);
        } else {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
            rd_kafka_header_add(hdrs, lua_tostring(L, -2), -1, v, (ssize_t)vl);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
}

/*
 * p:produce(topic, value, key, headers, partition, name, stamp) -> true, partition, offset |
 * nil, error. Waits for the delivery report; with the queue full, first for room in it.
 * Recorded under |name| (default: the topic) from the call to the report.
 */
static int l_produce(lua_State *L)
{
    struct kafka_producer *p = check_producer(L);
    struct cc_fiber *f = cc_fiber_check(L);
    const char *topic = luaL_checkstring(L, 2);
    size_t vl = 0, kl = 0;
    const char *value = lua_isnil(L, 3) ? NULL : luaL_checklstring(L, 3, &vl);
    const char *key = lua_isnoneornil(L, 4) ? NULL : luaL_checklstring(L, 4, &kl);
    bool has_headers = !lua_isnoneornil(L, 5);
    if (has_headers) luaL_checktype(L, 5, LUA_TTABLE);
    lua_Integer partition = luaL_optinteger(L, 6, RD_KAFKA_PARTITION_UA);
    bool stamp = lua_isnoneornil(L, 8) ? true : lua_toboolean(L, 8);
    if (partition < RD_KAFKA_PARTITION_UA || partition > INT32_MAX)
        return luaL_argerror(L, 6, "partition out of range");
    struct kafka_topic *t = kafka_topic_get(p, topic);
    if (!t)
        return luaL_error(L, "Kafka topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
    const struct cc_ikey *rkey = t->key;
    if (!lua_isnoneornil(L, 7) && p->kv->vm->rec) {
        size_t nl;
        const char *name = luaL_checklstring(L, 7, &nl);
        rkey = cc_recorder_key(p->kv->vm->rec, "kafka", 5, name, nl);
    }
    /* the headers' shape is checked before anything is allocated: errors raise */
    if (has_headers) {
        lua_pushnil(L);
        while (lua_next(L, 5)) {
            bool ok;
            if (lua_type(L, -2) == LUA_TSTRING) {
                ok = lua_type(L, -1) == LUA_TSTRING ||
                     (lua_isboolean(L, -1) && !lua_toboolean(L, -1));
            } else {
                ok = lua_istable(L, -1);
                if (ok) {
                    lua_rawgeti(L, -1, 1);
                    lua_rawgeti(L, -2, 2);
                    ok = lua_type(L, -2) == LUA_TSTRING &&
                         (lua_type(L, -1) == LUA_TSTRING ||
                          (lua_isboolean(L, -1) && !lua_toboolean(L, -1)));
                    lua_pop(L, 2);
                }
            }
            lua_pop(L, 1);
            if (!ok)
                return luaL_error(L, "headers: give { name = \"value\" } or "
                                     "{ { name, \"value\" }, ... } (false: a null value)");
        }
    }
    rd_kafka_headers_t *hdrs = NULL;
    if (has_headers || stamp) {
        hdrs = rd_kafka_headers_new(4);
        if (has_headers) add_headers(L, 5, hdrs);
        if (stamp) {
            unsigned char b[KAFKA_STAMP_LEN];
            kafka_stamp_encode(kafka_wall_ns(), b);
            rd_kafka_header_add(hdrs, KAFKA_STAMP_HEADER, -1, b, sizeof(b));
        }
    }
    struct kafka_op *op = kafka_op_new(p->kv);
    op->fiber = f;
    op->rkt = t->rkt;
    op->key = rkey;
    op->partition = (int32_t)partition;
    op->hdrs = hdrs;
    rd_kafka_resp_err_t err = kafka_produce(p, op, key, kl, key != NULL, value, vl);
    if (err) {
        const char *why = rd_kafka_err2str(err);
        kafka_record_for(p->kv->vm, f, rkey, cc_now_ns() - op->t0, vl, why);
        kafka_op_release(p->kv, op);
        lua_settop(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    lua_settop(L, 0);
    return cc_fiber_wait(L, f, &op->waiter);
}

/* p:queue_full_waits() -> how many produce calls of this thread waited for room in the queue */
static int l_queue_full_waits(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)check_producer(L)->queue_full_waits);
    return 1;
}

/* p:outstanding() -> messages produced and not yet reported, plus those waiting for room */
static int l_outstanding(lua_State *L)
{
    struct kafka_producer *p = check_producer(L);
    lua_Number n = rd_kafka_outq_len(p->rk);
    for (struct kafka_op *op = p->blocked; op; op = op->next)
        n++;
    lua_pushnumber(L, n);
    return 1;
}

/* ---- consumers -------------------------------------------------------------------------- */

static int64_t offset_of(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return RD_KAFKA_OFFSET_STORED;
    if (lua_type(L, idx) == LUA_TNUMBER) return (int64_t)lua_tonumber(L, idx);
    const char *s = luaL_checkstring(L, idx);
    if (strcmp(s, "beginning") == 0 || strcmp(s, "earliest") == 0) return RD_KAFKA_OFFSET_BEGINNING;
    if (strcmp(s, "end") == 0 || strcmp(s, "latest") == 0) return RD_KAFKA_OFFSET_END;
    if (strcmp(s, "stored") == 0) return RD_KAFKA_OFFSET_STORED;
    return luaL_error(L, "offset: a number, \"beginning\", \"end\" or \"stored\", not \"%s\"", s);
}

/*
 * core.consumer{ bootstrap =, settings = { ... }, topics = { ... } (subscribe, needs
 * group.id), assign = { { topic, partition, offset }, ... }, stamps = true }
 */
static int l_consumer(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "Kafka clients live in cicada's threads");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "bootstrap");
    const char *bootstrap = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "settings");
    int settings = lua_gettop(L);
    lua_getfield(L, 1, "topics");
    int topics = lua_gettop(L);
    lua_getfield(L, 1, "assign");
    int assign = lua_gettop(L);
    lua_getfield(L, 1, "stamps");
    bool stamps = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
    bool subscribe = lua_istable(L, topics) && lua_objlen(L, topics) > 0;
    bool assigned = lua_istable(L, assign) && lua_objlen(L, assign) > 0;
    if (subscribe == assigned)
        return luaL_error(L, "a Kafka consumer needs topics (a group subscription) or assign "
                             "(partitions), one of the two");
    /* every argument is read and checked before librdkafka objects exist: errors raise */
    rd_kafka_topic_partition_list_t *list = NULL;
    const char *pairs[258];
    conf_pairs(L, settings, pairs, (int)CC_ARRAY_LEN(pairs));
    int n = (int)lua_objlen(L, subscribe ? topics : assign);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, subscribe ? topics : assign, i);
        if (subscribe) {
            luaL_checkstring(L, -1);
        } else {
            luaL_checktype(L, -1, LUA_TTABLE);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            lua_rawgeti(L, -3, 3);
            luaL_checkstring(L, -3);
            luaL_checkinteger(L, -2);
            offset_of(L, lua_gettop(L));
            lua_pop(L, 3);
        }
        lua_pop(L, 1);
    }
    char err[512];
    rd_kafka_conf_t *conf = kafka_conf_new(bootstrap, pairs, err, sizeof(err));
    if (!conf) return luaL_error(L, "Kafka consumer settings: %s", err);
    size_t gl = 0;
    if (subscribe &&
        (rd_kafka_conf_get(conf, "group.id", NULL, &gl) != RD_KAFKA_CONF_OK || gl <= 1)) {
        rd_kafka_conf_destroy(conf);
        return luaL_error(L, "a Kafka consumer that subscribes to topics needs a group "
                             "(group_id)");
    }
    struct consumer_ud *u = lua_newuserdata(L, sizeof(*u));
    u->c = NULL;
    luaL_getmetatable(L, CONSUMER_MT);
    lua_setmetatable(L, -2);
    struct kafka_consumer *c = kafka_consumer_new(kafka_vm_get(vm), conf, err, sizeof(err));
    if (!c) return luaL_error(L, "Kafka consumer: %s", err);
    u->c = c;
    c->stamps = stamps;
    list = rd_kafka_topic_partition_list_new(n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, subscribe ? topics : assign, i);
        if (subscribe) {
            rd_kafka_topic_partition_list_add(list, lua_tostring(L, -1), RD_KAFKA_PARTITION_UA);
        } else {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            lua_rawgeti(L, -3, 3);
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(
                list, lua_tostring(L, -3), (int32_t)lua_tointeger(L, -2));
            tp->offset = offset_of(L, lua_gettop(L));
            lua_pop(L, 3);
        }
        lua_pop(L, 1);
    }
    rd_kafka_resp_err_t e2 =
        subscribe ? rd_kafka_subscribe(c->rk, list) : rd_kafka_assign(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (e2) {
        kafka_consumer_close(c, false);
        return luaL_error(L, "Kafka consumer: %s: %s", subscribe ? "subscribe" : "assign",
                          rd_kafka_err2str(e2));
    }
    return 1;
}

static struct kafka_consumer *check_consumer(lua_State *L)
{
    struct consumer_ud *u = luaL_checkudata(L, 1, CONSUMER_MT);
    if (!u->c || u->c->closed) luaL_error(L, "this Kafka consumer is closed");
    return u->c;
}

/* c:poll(timeout) -> message | nil, "timeout" | nil, error. Waits up to |timeout| seconds
 * (default 1; 0: only what is there). */
static int l_poll(lua_State *L)
{
    struct kafka_consumer *c = check_consumer(L);
    struct cc_fiber *f = cc_fiber_check(L);
    double timeout = luaL_optnumber(L, 2, 1.0);
    rd_kafka_message_t *m = kafka_consumer_take(c);
    lua_settop(L, 0);
    if (m) {
        kafka_consumer_note(c, f, m);
        return kafka_lua_push_message(L, c, m);
    }
    if (timeout <= 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "timeout");
        return 2;
    }
    uint64_t deadline = cc_now_ns() + (uint64_t)(timeout * 1e9);
    struct kafka_wait *w = kafka_wait_new(c, f, deadline);
    return cc_fiber_wait(L, f, &w->waiter);
}

/* c:close(): leaves the group (on a pool thread) and frees the consumer. */
static int l_consumer_close(lua_State *L)
{
    struct consumer_ud *u = luaL_checkudata(L, 1, CONSUMER_MT);
    if (u->c && !u->c->closed) kafka_consumer_close(u->c, true);
    return 0;
}

static int l_consumer_gc(lua_State *L)
{
    struct consumer_ud *u = luaL_checkudata(L, 1, CONSUMER_MT);
    if (u->c) kafka_consumer_release(u->c);
    u->c = NULL;
    return 0;
}

/* core.stamp() -> a stamp of now (8 bytes), for scripts that carry one in another protocol */
static int l_stamp(lua_State *L)
{
    unsigned char b[KAFKA_STAMP_LEN];
    kafka_stamp_encode(kafka_wall_ns(), b);
    lua_pushlstring(L, (const char *)b, sizeof(b));
    return 1;
}

/* core.stamp_age_ms(stamp) -> milliseconds since |stamp|, or nothing when it is not one */
static int l_stamp_age(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    uint64_t sent;
    if (!kafka_stamp_decode(s, n, &sent)) return 0;
    uint64_t now = kafka_wall_ns();
    lua_pushnumber(L, now > sent ? (lua_Number)(now - sent) / 1e6 : 0);
    return 1;
}

static int l_version(lua_State *L)
{
    lua_pushstring(L, rd_kafka_version_str());
    return 1;
}

static const luaL_Reg producer_methods[] = {
    {"produce", l_produce},
    {"queue_full_waits", l_queue_full_waits},
    {"outstanding", l_outstanding},
    {NULL, NULL},
};

static const luaL_Reg consumer_methods[] = {
    {"poll", l_poll},
    {"close", l_consumer_close},
    {NULL, NULL},
};

int kafka_lua_open(lua_State *L)
{
    if (luaL_newmetatable(L, PRODUCER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, producer_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, CONSUMER_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, consumer_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_consumer_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_producer);
    lua_setfield(L, -2, "producer");
    lua_pushcfunction(L, l_consumer);
    lua_setfield(L, -2, "consumer");
    lua_pushcfunction(L, l_stamp);
    lua_setfield(L, -2, "stamp");
    lua_pushcfunction(L, l_stamp_age);
    lua_setfield(L, -2, "stamp_age_ms");
    lua_pushcfunction(L, l_version);
    lua_setfield(L, -2, "version");
    lua_pushliteral(L, KAFKA_STAMP_HEADER);
    lua_setfield(L, -2, "stamp_header");
    return 1;
}
