/* SPDX-License-Identifier: MIT */
/*
 * mqtt_lua.c: `cicada.mqtt.core`, the C half of the MQTT client in Lua: clients whose
 * connect, publish, subscribe, unsubscribe and disconnect suspend the calling user until the
 * broker answers, message handlers, and the delivery stamp. MqttUser and the Lua-side client
 * are in lua/cicada/mqtt.lua.
 */
#include "proto/mqtt/mqtt_lua.h"
#include "proto/mqtt/mqtt.h"
#include "core/log.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define CLIENT_MT "cicada.mqtt.client"

struct client_ud {
    struct mqtt_client *c;
};

static struct mqtt_client *check_client(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (!u->c || !u->c->mv) luaL_error(L, "this MQTT client is closed");
    return u->c;
}

/* The fiber running |L|, or NULL when |L| is not a fiber (a message handler): such a caller
 * cannot wait, so its operations complete unseen (and are still recorded). */
static struct cc_fiber *fiber_of(struct mqtt_client *c, lua_State *L)
{
    struct cc_fiber *f = c->mv->vm->current;
    return f && f->co == L ? f : NULL;
}

/* ---- settings ------------------------------------------------------------------------------ */

static char *opt_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    char *v = NULL;
    if (!lua_isnil(L, -1)) {
        if (!lua_isstring(L, -1)) luaL_error(L, "%s must be a string", k);
        v = cc_xstrdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

static uint32_t opt_ms(lua_State *L, int t, const char *k, uint32_t def)
{
    lua_getfield(L, t, k);
    uint32_t v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "%s must be a number of seconds", k);
        double s = lua_tonumber(L, -1);
        v = s <= 0 ? 0 : s > 4e6 ? 4000000000u : (uint32_t)(s * 1000 + 0.5);
    }
    lua_pop(L, 1);
    return v;
}

static int parse_protocol(lua_State *L, int idx)
{
    if (lua_isnil(L, idx)) return MQTT_PROTOCOL_V311;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int v = (int)lua_tointeger(L, idx);
        if (v == 3) return MQTT_PROTOCOL_V31;
        if (v == 4) return MQTT_PROTOCOL_V311;
        if (v == 5) return MQTT_PROTOCOL_V5;
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strcmp(s, "3.1") == 0 || strcmp(s, "MQTTv31") == 0) return MQTT_PROTOCOL_V31;
        if (strcmp(s, "3.1.1") == 0 || strcmp(s, "MQTTv311") == 0) return MQTT_PROTOCOL_V311;
        if (strcmp(s, "5") == 0 || strcmp(s, "5.0") == 0 || strcmp(s, "MQTTv5") == 0)
            return MQTT_PROTOCOL_V5;
    }
    return luaL_error(L, "protocol must be \"3.1.1\" (or 4, \"MQTTv311\"), \"5\" (or 5, "
                         "\"MQTTv5\") or \"3.1\"");
}

static void check_topic(lua_State *L, int idx, const char *t, size_t n, bool filter)
{
    if (n == 0 || strlen(t) != n) luaL_argerror(L, idx, "empty topic, or one holding a NUL byte");
    if (mosquitto_validate_utf8(t, (int)n) != MOSQ_ERR_SUCCESS)
        luaL_argerror(L, idx, "the topic is not valid UTF-8");
    int rc = filter ? mosquitto_sub_topic_check2(t, n) : mosquitto_pub_topic_check2(t, n);
    if (rc != MOSQ_ERR_SUCCESS)
        luaL_argerror(L, idx,
                      filter ? "not a valid topic filter"
                             : "not a valid topic to publish to (no + or # wildcards)");
}

static void settings_drop(struct mqtt_settings *s)
{
    cc_free(s->host);
    cc_free(s->client_id);
    cc_free(s->username);
    cc_free(s->password);
    cc_free(s->will_topic);
    cc_free(s->will_payload);
    cc_free(s->ca_file);
    cc_free(s->cert_file);
    cc_free(s->key_file);
}

/*
 * core.client{ host=, port=, client_id=, clean_session=, username=, password=, keepalive=,
 * protocol=, will = { topic=, payload=, qos=, retain= }, tls=, verify=, ca_file=, cert_file=,
 * key_file=, connect_timeout=, timeout= } -> a client (not yet connected)
 */
static int l_client(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "MQTT clients live in cicada's threads");
    luaL_checktype(L, 1, LUA_TTABLE);
    /* everything that can raise is checked before anything is allocated */
    lua_getfield(L, 1, "host");
    if (!lua_isstring(L, -1) || lua_objlen(L, -1) == 0)
        return luaL_error(L, "an MQTT client needs a host");
    lua_getfield(L, 1, "tls");
    bool tls = lua_toboolean(L, -1);
    lua_getfield(L, 1, "port");
    lua_Integer port = luaL_optinteger(L, -1, tls ? MQTT_DEFAULT_TLS_PORT : MQTT_DEFAULT_PORT);
    if (port < 1 || port > 65535) return luaL_error(L, "port %d is out of range", (int)port);
    lua_getfield(L, 1, "keepalive");
    lua_Integer keepalive = luaL_optinteger(L, -1, 60);
    if (keepalive != 0 && (keepalive < 5 || keepalive > 65535))
        return luaL_error(L, "keepalive must be 0 (none) or 5 to 65535 seconds");
    lua_getfield(L, 1, "protocol");
    int protocol = parse_protocol(L, -1);
    lua_getfield(L, 1, "clean_session");
    bool clean = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
    lua_getfield(L, 1, "client_id");
    size_t idl = 0;
    const char *id = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &idl);
    if (id && (idl == 0 || idl > 65535 || mosquitto_validate_utf8(id, (int)idl)))
        return luaL_error(L, "client_id must be a non-empty UTF-8 string");
    if (!clean && !id) return luaL_error(L, "clean_session = false needs a client_id");
    lua_getfield(L, 1, "verify");
    bool verify = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
    lua_pop(L, 8);
    static const char *const strings[] = {"username", "password", "ca_file", "cert_file",
                                          "key_file"};
    for (size_t i = 0; i < CC_ARRAY_LEN(strings); i++) {
        lua_getfield(L, 1, strings[i]);
        if (!lua_isnil(L, -1) && !lua_isstring(L, -1))
            return luaL_error(L, "%s must be a string", strings[i]);
        lua_pop(L, 1);
    }
    static const char *const numbers[] = {"connect_timeout", "timeout"};
    for (size_t i = 0; i < CC_ARRAY_LEN(numbers); i++) {
        lua_getfield(L, 1, numbers[i]);
        if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
            return luaL_error(L, "%s must be a number of seconds", numbers[i]);
        lua_pop(L, 1);
    }
    int will_qos = 0;
    bool will_retain = false;
    lua_getfield(L, 1, "will");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_getfield(L, -1, "topic");
        size_t wl;
        const char *wt = lua_tolstring(L, -1, &wl);
        if (!wt) return luaL_error(L, "will.topic must be a string");
        check_topic(L, 1, wt, wl, false);
        lua_getfield(L, -2, "qos");
        will_qos = (int)luaL_optinteger(L, -1, 0);
        if (will_qos < 0 || will_qos > 2) return luaL_error(L, "will.qos must be 0, 1 or 2");
        lua_getfield(L, -3, "retain");
        will_retain = lua_toboolean(L, -1);
        lua_getfield(L, -4, "payload");
        if (!lua_isnil(L, -1) && !lua_isstring(L, -1))
            return luaL_error(L, "will.payload must be a string");
        lua_pop(L, 4);
    }
    lua_pop(L, 1);

    struct mqtt_vm *mv = mqtt_vm_get(vm);
    struct mqtt_settings set = {0};
    set.host = opt_str(L, 1, "host");
    set.port = (uint16_t)port;
    set.client_id = id ? cc_xstrdup(id) : NULL;
    set.clean_session = clean;
    set.username = opt_str(L, 1, "username");
    set.password = opt_str(L, 1, "password");
    set.keepalive = (int)keepalive;
    set.protocol = protocol;
    set.tls = tls;
    set.verify = verify;
    set.ca_file = opt_str(L, 1, "ca_file");
    set.cert_file = opt_str(L, 1, "cert_file");
    set.key_file = opt_str(L, 1, "key_file");
    set.connect_timeout_ms = opt_ms(L, 1, "connect_timeout", MQTT_DEFAULT_TIMEOUT_MS);
    set.timeout_ms = opt_ms(L, 1, "timeout", MQTT_DEFAULT_TIMEOUT_MS);
    lua_getfield(L, 1, "will");
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "topic");
        set.will_topic = cc_xstrdup(lua_tostring(L, -1));
        lua_getfield(L, -2, "payload");
        size_t pl = 0;
        const char *p = lua_isnil(L, -1) ? "" : lua_tolstring(L, -1, &pl);
        set.will_payload = cc_xmalloc(pl + 1);
        memcpy(set.will_payload, p, pl);
        set.will_payload[pl] = '\0';
        set.will_len = pl;
        set.will_qos = will_qos;
        set.will_retain = will_retain;
        lua_pop(L, 2);
    }
    lua_pop(L, 1);

    struct cc_tls_ctx *ctx = NULL;
    if (tls) {
        char *err = NULL;
        ctx = mqtt_tls_get(mv, &set, &err);
        if (!ctx) {
            settings_drop(&set);
            lua_pushstring(L, err ? err : "TLS: cannot make a context");
            cc_free(err);
            return lua_error(L);
        }
    }

    struct client_ud *u = lua_newuserdata(L, sizeof(*u));
    u->c = NULL;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L); /* the client's message handlers, by slot */
    lua_setfenv(L, -2);
    u->c = mqtt_client_new(mv, &set);
    u->c->tls = ctx;
    /* the vm finds the userdata of a client (for its handlers) without keeping it alive */
    if (mv->weak_ref == LUA_NOREF) {
        lua_newtable(L);
        lua_newtable(L);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        mv->weak_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, mv->weak_ref);
    lua_pushlightuserdata(L, u->c);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 1;
}

/* ---- results ----------------------------------------------------------------------------- */

int mqtt_lua_push_result(lua_State *L, struct mqtt_op *op)
{
    if (op->error) {
        lua_pushnil(L);
        lua_pushstring(L, op->error);
        return 2;
    }
    if (op->kind == MQTT_OP_SUBSCRIBE) {
        lua_pushinteger(L, op->granted);
        return 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* After the call that started |op|: its outcome now, or a wait for it. */
static int finish(lua_State *L, struct mqtt_op *op, struct cc_fiber *f)
{
    if (op->done) {
        lua_settop(L, 0);
        int n = mqtt_lua_push_result(L, op);
        mqtt_op_free(op);
        return n;
    }
    op->starting = false;
    if (!f) { /* a handler's operation: it completes unseen, and is recorded then */
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_settop(L, 0);
    return cc_fiber_wait(L, f, &op->waiter);
}

/* An operation asked of a client that is not connected: false (the Lua side connects and asks
 * again) when |auto_connect|, else a recorded failure. */
static int not_connected(lua_State *L, struct mqtt_client *c, const struct cc_ikey *key,
                         bool auto_connect, struct cc_fiber *f)
{
    if (auto_connect && f) {
        lua_pushboolean(L, 0);
        return 1;
    }
    char msg[600];
    snprintf(msg, sizeof(msg), "not connected%s%s", c->error ? ": " : "", c->error ? c->error : "");
    struct cc_vm *vm = c->mv->vm;
    if (key && vm->rec) cc_vm_record(vm, key, 0, 0, msg, strlen(msg));
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* The statistics key for an operation: |full| names it whole, else "<kind>:<qos>:<name>". */
static const struct cc_ikey *op_key(struct mqtt_client *c, const char *kind, int qos,
                                    const char *name, size_t nl, bool full)
{
    char buf[1024];
    if (full) return mqtt_key(c->mv, name, nl);
    size_t n = mqtt_event_name(buf, sizeof(buf), kind, qos, name, nl);
    return mqtt_key(c->mv, buf, n);
}

/* ---- methods --------------------------------------------------------------------------------- */

/* client:connect() -> true | nil, err. Records "connect" when it starts a connection. */
static int l_connect(lua_State *L)
{
    struct mqtt_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    if (c->state == MQTT_CONNECTED) {
        lua_pushboolean(L, 1);
        return 1;
    }
    struct mqtt_op *op = mqtt_op_new(c, MQTT_OP_CONNECT, f);
    if (c->state == MQTT_IDLE) {
        op->key = c->mv->key_connect;
        if (!op->key) op->key = c->mv->key_connect = mqtt_key(c->mv, "connect", 7);
        mqtt_connect_start(c, op);
    } else { /* already under way: wait for the same CONNACK, recorded once */
        mqtt_op_pend(op);
    }
    return finish(L, op, f);
}

/* client:publish(topic, payload, qos, retain, stamp, name, full_name, auto_connect, no_wait)
 * -> true | nil, err | false (not connected: connect, then publish again). With |no_wait| the
 * call returns once the message is handed to libmosquitto and the publish is recorded when it
 * completes, as Locust's MqttUser does; past MQTT_MAX_UNWAITED such messages in flight on the
 * client, it waits after all (a user cannot queue without bound). */
static int l_publish(lua_State *L)
{
    struct mqtt_client *c = check_client(L);
    size_t tl, pl = 0, nl = 0;
    const char *topic = luaL_checklstring(L, 2, &tl);
    const char *payload = luaL_optlstring(L, 3, "", &pl);
    int qos = (int)luaL_optinteger(L, 4, 0);
    bool retain = lua_toboolean(L, 5);
    bool stamp = lua_toboolean(L, 6);
    const char *name = luaL_optlstring(L, 7, NULL, &nl);
    bool full = lua_toboolean(L, 8);
    bool auto_connect = lua_toboolean(L, 9);
    bool no_wait = lua_toboolean(L, 10);
    if (qos < 0 || qos > 2) return luaL_argerror(L, 4, "QoS must be 0, 1 or 2");
    if (pl + tl > 268435455 - MQTT_STAMP_LEN - 64)
        return luaL_argerror(L, 3, "the payload exceeds MQTT's 256 MiB");
    struct cc_fiber *f = fiber_of(c, L);
    struct mqtt_vm *mv = c->mv;
    const struct cc_ikey *key;
    if (topic == c->pub_topic && qos == c->pub_qos && !name) {
        /* the same topic as last time (Lua strings are unique, and the client's handler table
         * keeps that one alive): checked and named already */
        key = c->pub_key;
    } else {
        check_topic(L, 2, topic, tl, false);
        key = op_key(c, "publish", qos, name ? name : topic, name ? nl : tl, full);
        if (!name) {
            lua_getfenv(L, 1);
            lua_pushvalue(L, 2);
            lua_setfield(L, -2, "topic");
            lua_pop(L, 1);
            c->pub_topic = topic;
            c->pub_qos = qos;
            c->pub_key = key;
        }
    }
    if (c->state != MQTT_CONNECTED) return not_connected(L, c, key, auto_connect, f);
    const char *p = payload;
    if (stamp) {
        if (pl + MQTT_STAMP_LEN > mv->buf_cap)
            cc_grow((void **)&mv->buf, &mv->buf_cap, pl + MQTT_STAMP_LEN, 1);
        mqtt_stamp_write((unsigned char *)mv->buf, mqtt_wall_ns());
        memcpy(mv->buf + MQTT_STAMP_LEN, payload, pl);
        p = mv->buf;
        pl += MQTT_STAMP_LEN;
    }
    if (no_wait && c->npending < MQTT_MAX_UNWAITED) f = NULL;
    struct mqtt_op *op = mqtt_op_new(c, MQTT_OP_PUBLISH, f);
    op->key = key;
    op->length = pl;
    mqtt_op_pend(op);
    mqtt_enter(c);
    /* libmosquitto sets op->mid before it writes: a QoS 0 message written at once completes
     * (on_publish) inside this call, and finds its operation */
    int rc = mosquitto_publish_v5(c->mosq, &op->mid, topic, (int)pl, p, qos, retain, NULL);
    if (rc != MOSQ_ERR_SUCCESS && !op->done) mqtt_op_complete(op, mosquitto_strerror(rc));
    mqtt_leave(c);
    return finish(L, op, f);
}

/* client:subscribe(filter, qos, handler, name, full_name, auto_connect)
 * -> granted QoS | nil, err | false (not connected). The handler, a function(topic, payload,
 * qos, retain, latency_ms), is set before the SUBSCRIBE goes: retained messages follow the
 * SUBACK at once. */
static int l_subscribe(lua_State *L)
{
    struct mqtt_client *c = check_client(L);
    size_t fl, nl = 0;
    const char *filter = luaL_checklstring(L, 2, &fl);
    int qos = (int)luaL_optinteger(L, 3, 0);
    bool has_handler = !lua_isnoneornil(L, 4);
    if (has_handler) luaL_checktype(L, 4, LUA_TFUNCTION);
    const char *name = luaL_optlstring(L, 5, NULL, &nl);
    bool full = lua_toboolean(L, 6);
    bool auto_connect = lua_toboolean(L, 7);
    check_topic(L, 2, filter, fl, true);
    if (qos < 0 || qos > 2) return luaL_argerror(L, 3, "QoS must be 0, 1 or 2");
    struct cc_fiber *f = fiber_of(c, L);
    const struct cc_ikey *key =
        op_key(c, "subscribe", qos, name ? name : filter, name ? nl : fl, full);
    if (c->state != MQTT_CONNECTED) return not_connected(L, c, key, auto_connect, f);

    struct mqtt_sub *s = mqtt_sub_find(c, filter);
    if (!s) {
        if (c->nsubs == c->subs_cap) {
            size_t cap = c->subs_cap;
            cc_grow((void **)&c->subs, &cap, c->nsubs + 1, sizeof(*c->subs));
            c->subs_cap = (uint32_t)cap;
        }
        s = &c->subs[c->nsubs++];
        memset(s, 0, sizeof(*s));
        s->filter = cc_xstrdup(filter);
    }
    s->qos = qos;
    cc_free(s->name);
    s->name = name && !full ? cc_xstrdup(name) : NULL;
    memset(s->deliver_key, 0, sizeof(s->deliver_key));
    lua_getfenv(L, 1);
    if (has_handler) {
        if (!s->handler) s->handler = (int)++c->handlers_used;
        lua_pushvalue(L, 4);
        lua_rawseti(L, -2, s->handler);
    } else if (s->handler) {
        lua_pushnil(L);
        lua_rawseti(L, -2, s->handler);
        s->handler = 0;
    }
    lua_pop(L, 1);

    struct mqtt_op *op = mqtt_op_new(c, MQTT_OP_SUBSCRIBE, f);
    op->key = key;
    op->topic = cc_xstrdup(filter);
    mqtt_op_pend(op);
    mqtt_enter(c);
    int rc = mosquitto_subscribe_v5(c->mosq, &op->mid, filter, qos, 0, NULL);
    if (rc != MOSQ_ERR_SUCCESS && !op->done) {
        struct mqtt_sub *again = mqtt_sub_find(c, filter);
        if (again) {
            if (again->handler) mqtt_lua_clear_handler(c, again->handler);
            mqtt_sub_remove(c, again);
        }
        mqtt_op_complete(op, mosquitto_strerror(rc));
    }
    mqtt_leave(c);
    return finish(L, op, f);
}

/* client:unsubscribe(filter, auto_connect) -> true | nil, err | false. The handler goes at
 * once; messages still in flight for the filter are dropped. */
static int l_unsubscribe(lua_State *L)
{
    struct mqtt_client *c = check_client(L);
    size_t fl;
    const char *filter = luaL_checklstring(L, 2, &fl);
    bool auto_connect = lua_toboolean(L, 3);
    check_topic(L, 2, filter, fl, true);
    struct cc_fiber *f = fiber_of(c, L);
    struct mqtt_sub *s = mqtt_sub_find(c, filter);
    const char *nm = s && s->name ? s->name : filter;
    const struct cc_ikey *key = op_key(c, "unsubscribe", -1, nm, strlen(nm), false);
    if (s) {
        if (s->handler) mqtt_lua_clear_handler(c, s->handler);
        mqtt_sub_remove(c, s);
    }
    if (c->state != MQTT_CONNECTED) return not_connected(L, c, key, auto_connect, f);
    struct mqtt_op *op = mqtt_op_new(c, MQTT_OP_UNSUBSCRIBE, f);
    op->key = key;
    mqtt_op_pend(op);
    mqtt_enter(c);
    int rc = mosquitto_unsubscribe_v5(c->mosq, &op->mid, filter, NULL);
    if (rc != MOSQ_ERR_SUCCESS && !op->done) mqtt_op_complete(op, mosquitto_strerror(rc));
    mqtt_leave(c);
    return finish(L, op, f);
}

static void forget_subscriptions(lua_State *L, struct mqtt_client *c)
{
    lua_newtable(L);
    if (lua_getfenv(L, 1), lua_istable(L, -1)) {
        lua_rawgeti(L, -1, 0); /* the default handler stays */
        lua_rawseti(L, -3, 0);
    }
    lua_pop(L, 1);
    lua_setfenv(L, 1);
    c->pub_topic = NULL; /* no longer kept alive */
    while (c->nsubs)
        mqtt_sub_remove(c, &c->subs[c->nsubs - 1]);
}

/* client:disconnect() -> true | nil, err. Sends DISCONNECT and records "disconnect", timed to
 * the end of the connection. The session's subscriptions are forgotten: a later operation
 * connects afresh. */
static int l_disconnect(lua_State *L)
{
    struct mqtt_client *c = check_client(L);
    struct cc_fiber *f = fiber_of(c, L);
    forget_subscriptions(L, c);
    if (c->state != MQTT_CONNECTED) {
        if (c->state != MQTT_IDLE) {
            mqtt_enter(c);
            mqtt_client_close(c, "disconnected before the connection was up");
            mqtt_leave(c);
        }
        lua_pushboolean(L, 1);
        return 1;
    }
    struct mqtt_op *op = mqtt_op_new(c, MQTT_OP_DISCONNECT, f);
    op->key = c->mv->key_disconnect;
    if (!op->key) op->key = c->mv->key_disconnect = mqtt_key(c->mv, "disconnect", 10);
    mqtt_op_pend(op);
    mqtt_enter(c);
    int rc = mosquitto_disconnect_v5(c->mosq, 0, NULL);
    if (rc != MOSQ_ERR_SUCCESS && !op->done) mqtt_op_complete(op, mosquitto_strerror(rc));
    mqtt_leave(c);
    return finish(L, op, f);
}

/* client:close([drop]): ends the connection at once, without DISCONNECT (the broker sends the
 * will) and without a record; subscriptions are forgotten. Idempotent. With |drop| (the user is
 * stopping) publishes that nobody waits for are dropped unrecorded rather than failed, as the
 * waits of a stopped user are. */
static int l_close(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    struct mqtt_client *c = u->c;
    if (!c || !c->mv) return 0;
    if (lua_toboolean(L, 2)) {
        for (struct mqtt_op *op = c->ops, *next; op; op = next) {
            next = op->next;
            if (!op->fiber) mqtt_op_cancel(&op->waiter);
        }
    }
    forget_subscriptions(L, c);
    mqtt_enter(c);
    mqtt_client_close(c, NULL);
    mqtt_leave(c);
    return 0;
}

static int l_is_connected(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    lua_pushboolean(L, u->c && u->c->mv && u->c->state == MQTT_CONNECTED);
    return 1;
}

/* client:last_error(): why the last connection failed or ended, or nil. */
static int l_last_error(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->c && u->c->error)
        lua_pushstring(L, u->c->error);
    else
        lua_pushnil(L);
    return 1;
}

/* client:on_message(fn): the handler for messages no subscription's handler takes; nil
 * removes it. */
static int l_on_message(lua_State *L)
{
    struct mqtt_client *c = check_client(L);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 0);
    c->has_default = !lua_isnoneornil(L, 2);
    return 0;
}

static int l_gc(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->c) mqtt_client_release(u->c);
    u->c = NULL;
    return 0;
}

/* ---- message handlers ------------------------------------------------------------------------ */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = luaL_typename(L, 1);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Pushes the userdata of |c| from the vm's weak table; false when it is gone. */
static bool push_ud(lua_State *L, struct mqtt_client *c)
{
    if (!c->mv || c->mv->weak_ref == LUA_NOREF) return false;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->mv->weak_ref);
    lua_pushlightuserdata(L, c);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_isuserdata(L, -1)) return true;
    lua_pop(L, 1);
    return false;
}

void mqtt_lua_clear_handler(struct mqtt_client *c, int slot)
{
    lua_State *L = c->mv ? c->mv->vm->L : NULL;
    if (!L) return;
    int top = lua_gettop(L);
    if (push_ud(L, c)) {
        lua_getfenv(L, -1);
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            lua_rawseti(L, -2, slot);
        }
    }
    lua_settop(L, top);
}

/*
 * Runs a handler in protected mode on the vm's main state, so nothing it raises unwinds into
 * libmosquitto. Its errors are the script's: they go to the exceptions table (and the first
 * few to the log), as a task's would. A handler that tries to wait gets the error that it
 * cannot (it is not a user's coroutine).
 */
void mqtt_lua_dispatch(struct mqtt_client *c, int slot, const struct mosquitto_message *msg,
                       size_t skip, double latency_ms)
{
    struct mqtt_vm *mv = c->mv;
    lua_State *L = mv->vm->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, traceback);
    if (!push_ud(L, c)) goto out;
    lua_getfenv(L, -1);
    lua_rawgeti(L, -1, slot);
    if (!lua_isfunction(L, -1)) goto out;
    lua_pushstring(L, msg->topic);
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    lua_pushlstring(L, (const char *)msg->payload + (len >= skip ? skip : 0),
                    len >= skip ? len - skip : 0);
    lua_pushinteger(L, msg->qos);
    lua_pushboolean(L, msg->retain);
    if (latency_ms >= 0)
        lua_pushnumber(L, latency_ms);
    else
        lua_pushnil(L);
    if (lua_pcall(L, 5, 0, top + 1) != 0) {
        size_t tl;
        const char *tb = lua_tolstring(L, -1, &tl);
        if (!tb) tb = "(error object is not a string)", tl = strlen(tb);
        const char *nl = memchr(tb, '\n', tl);
        size_t ml = nl ? (size_t)(nl - tb) : tl;
        if (mv->vm->rec) cc_recorder_exception(mv->vm->rec, tb, ml, tb, tl);
        if (mv->handler_errors++ < 10) cc_error("mqtt", "message handler: %s", tb);
    }
out:
    lua_settop(L, top);
}

/* ---- the stamp ---------------------------------------------------------------------------------
 */

/* core.stamp(payload) -> the payload with the publisher's clock in front */
static int l_stamp(lua_State *L)
{
    size_t n;
    const char *p = luaL_optlstring(L, 1, "", &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    unsigned char s[MQTT_STAMP_LEN];
    mqtt_stamp_write(s, mqtt_wall_ns());
    luaL_addlstring(&b, (const char *)s, sizeof(s));
    luaL_addlstring(&b, p, n);
    luaL_pushresult(&b);
    return 1;
}

/* core.unstamp(payload) -> payload without the stamp, milliseconds since it was stamped; or
 * the payload as it is and nil when it has no stamp */
static int l_unstamp(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    uint64_t t;
    if (!mqtt_stamp_read(p, n, &t)) {
        lua_settop(L, 1);
        lua_pushnil(L);
        return 2;
    }
    uint64_t now = mqtt_wall_ns();
    lua_pushlstring(L, p + MQTT_STAMP_LEN, n - MQTT_STAMP_LEN);
    lua_pushnumber(L, now > t ? (double)(now - t) / 1e6 : 0);
    return 2;
}

static const luaL_Reg client_methods[] = {
    {"connect", l_connect},           {"publish", l_publish},
    {"subscribe", l_subscribe},       {"unsubscribe", l_unsubscribe},
    {"disconnect", l_disconnect},     {"close", l_close},
    {"is_connected", l_is_connected}, {"last_error", l_last_error},
    {"on_message", l_on_message},     {NULL, NULL},
};

int mqtt_lua_open(lua_State *L)
{
    if (luaL_newmetatable(L, CLIENT_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, client_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_client);
    lua_setfield(L, -2, "client");
    lua_pushcfunction(L, l_stamp);
    lua_setfield(L, -2, "stamp");
    lua_pushcfunction(L, l_unstamp);
    lua_setfield(L, -2, "unstamp");
    lua_pushinteger(L, MQTT_STAMP_LEN);
    lua_setfield(L, -2, "STAMP_LEN");
    return 1;
}
