/* SPDX-License-Identifier: MIT */
/*
 * pg_lua.c: `cicada.postgres.core`, the C half of the PostgreSQL client in Lua: clients whose
 * calls suspend the calling user until their results, and the conversion of results to Lua
 * tables. Option handling, transactions and PostgresUser are in lua/cicada/postgres.lua.
 */
#include "proto/pg/pg_lua.h"
#include "proto/pg/pg.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_MT "cicada.postgres.client"

struct client_ud {
    struct pg_client *c;
};

/* ---- results ---------------------------------------------------------------------------- */

/* SQL NULL: the light userdata NULL, which is also lua-cjson's cjson.null. */
static void push_null(lua_State *L)
{
    lua_pushlightuserdata(L, NULL);
}

static void push_value(lua_State *L, const PGresult *r, int row, int col, enum pg_vtype t)
{
    if (PQgetisnull(r, row, col)) {
        push_null(L);
        return;
    }
    const char *s = PQgetvalue(r, row, col);
    size_t n = (size_t)PQgetlength(r, row, col);
    switch (t) {
    case PGV_INT: {
        int64_t v;
        /* a double holds every integer up to 2^53 exactly; beyond, the text keeps it */
        if (pg_parse_int(s, n, &v) && v <= (1LL << 53) && v >= -(1LL << 53)) {
            lua_pushnumber(L, (lua_Number)v);
            return;
        }
        break;
    }
    case PGV_FLOAT: {
        double d;
        if (pg_parse_float(s, n, &d)) {
            lua_pushnumber(L, d);
            return;
        }
        break;
    }
    case PGV_BOOL: {
        bool b;
        if (pg_parse_bool(s, n, &b)) {
            lua_pushboolean(L, b);
            return;
        }
        break;
    }
    case PGV_TEXT:
        break;
    }
    lua_pushlstring(L, s, n);
}

/* The rows of |r| as a table: each row keyed by column name, or a list with |array|. A
 * command's row count is in `affected_rows`. */
static void push_rows(lua_State *L, const PGresult *r, bool typed, bool array)
{
    int rows = PQntuples(r), cols = PQnfields(r);
    /* this runs from the loop, outside any protected call: it must not raise */
    if (!lua_checkstack(L, cols + 8)) array = true;
    lua_createtable(L, rows, 1);
    int t = lua_gettop(L);
    /* the column names once, reused by every row */
    int names = t + 1;
    enum pg_vtype types[64];
    for (int j = 0; j < cols; j++) {
        if (!array) lua_pushstring(L, PQfname(r, j));
        if (j < (int)CC_ARRAY_LEN(types)) types[j] = typed ? pg_vtype_of(PQftype(r, j)) : PGV_TEXT;
    }
    for (int i = 0; i < rows; i++) {
        lua_createtable(L, array ? cols : 0, array ? 0 : cols);
        for (int j = 0; j < cols; j++) {
            enum pg_vtype ty = j < (int)CC_ARRAY_LEN(types) ? types[j]
                               : typed                      ? pg_vtype_of(PQftype(r, j))
                                                            : PGV_TEXT;
            if (array) {
                push_value(L, r, i, j, ty);
                lua_rawseti(L, -2, j + 1);
            } else {
                lua_pushvalue(L, names + j);
                push_value(L, r, i, j, ty);
                lua_rawset(L, -3);
            }
        }
        lua_rawseti(L, t, i + 1);
    }
    lua_settop(L, t);
    const char *affected = PQcmdTuples((PGresult *)r);
    if (affected && affected[0]) {
        lua_pushnumber(L, strtod(affected, NULL));
        lua_setfield(L, t, "affected_rows");
    }
}

/* Pushes a failed statement's sentence and SQLSTATE (nil when the failure is not the
 * server's). */
static void push_error(lua_State *L, const struct pg_stmt *st)
{
    if (st->err) {
        lua_pushstring(L, st->err);
        lua_pushnil(L);
        return;
    }
    const PGresult *r = st->res;
    if (PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
        lua_pushliteral(L, "not run: an earlier statement of the pipeline failed");
        lua_pushnil(L);
        return;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    char line[400];
    if (!msg) {
        pg_first_line(PQresultErrorMessage(r), line, sizeof(line));
        msg = line[0] ? line : PQresStatus(PQresultStatus(r));
    }
    if (state)
        lua_pushfstring(L, "SQLSTATE %s: %s", state, msg);
    else
        lua_pushstring(L, msg);
    if (state)
        lua_pushstring(L, state);
    else
        lua_pushnil(L);
}

static bool stmt_failed(const struct pg_stmt *st)
{
    if (st->err || !st->res) return true;
    switch (PQresultStatus(st->res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
    case PGRES_SINGLE_TUPLE:
        return false;
    default:
        return true;
    }
}

/* One statement's values: its rows (true for a prepare), or nil, error, SQLSTATE. */
static int push_stmt(lua_State *L, const struct pg_op *op, const struct pg_stmt *st)
{
    if (stmt_failed(st)) {
        lua_pushnil(L);
        push_error(L, st);
        return 3;
    }
    if (st->kind == PG_STMT_PREPARE) {
        lua_pushboolean(L, 1);
        return 1;
    }
    push_rows(L, st->res, op->typed, op->array);
    return 1;
}

int pg_lua_push_results(lua_State *L, struct pg_op *op)
{
    lua_checkstack(L, 8);
    if (op->kind == PG_OP_CONNECT) {
        if (op->nstmts && op->stmts[0].err) {
            lua_pushnil(L);
            lua_pushstring(L, op->stmts[0].err);
            return 2;
        }
        lua_pushboolean(L, 1);
        return 1;
    }
    if (op->kind == PG_OP_STMT) return push_stmt(L, op, &op->stmts[0]);
    /* a pipeline: the list of results, and the first failure */
    lua_createtable(L, (int)op->nstmts, 0);
    int t = lua_gettop(L);
    uint32_t first_fail = 0; /* 1-based */
    for (uint32_t i = 0; i < op->nstmts; i++) {
        const struct pg_stmt *st = &op->stmts[i];
        if (stmt_failed(st)) {
            lua_createtable(L, 0, 2);
            push_error(L, st);
            lua_setfield(L, -3, "sqlstate");
            lua_setfield(L, -2, "error");
            if (!first_fail) first_fail = i + 1;
        } else if (st->kind == PG_STMT_PREPARE) {
            lua_pushboolean(L, 1);
        } else {
            push_rows(L, st->res, op->typed, op->array);
        }
        lua_rawseti(L, t, (int)i + 1);
    }
    if (first_fail) {
        lua_rawgeti(L, t, (int)first_fail);
        lua_getfield(L, -1, "error");
        lua_remove(L, -2);
    } else {
        lua_pushnil(L);
    }
    return 2;
}

/* ---- calls ------------------------------------------------------------------------------ */

static struct pg_client *check_client(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (!u->c || u->c->closed || !u->c->pv) luaL_error(L, "this PostgreSQL client is closed");
    return u->c;
}

static uint32_t opt_ms(lua_State *L, int idx, uint32_t def)
{
    if (lua_isnoneornil(L, idx)) return def;
    double s = luaL_checknumber(L, idx);
    return s <= 0 ? 0 : s > 4e6 ? 4000000000u : (uint32_t)(s * 1000 + 0.5);
}

/* The statistics entry: |name| when given, else the SQL text made a name. */
static const struct cc_ikey *stats_key(lua_State *L, struct pg_client *c, int name_idx,
                                       const char *sql, size_t sql_len, const char *prefix)
{
    struct cc_recorder *rec = c->pv->vm->rec;
    if (!rec) return NULL;
    size_t nl;
    const char *name = lua_isnoneornil(L, name_idx) ? NULL : luaL_checklstring(L, name_idx, &nl);
    char buf[PG_MAX_NAME + 64];
    if (!name) {
        size_t pl = prefix ? strlen(prefix) : 0;
        if (pl) memcpy(buf, prefix, pl);
        nl = pl + pg_stats_name(sql, sql_len, buf + pl, sizeof(buf) - pl);
        name = buf;
    }
    return cc_recorder_key(rec, "postgres", 8, name, nl);
}

/* Copies the parameters (a list at |idx|; its length is `n` when set, for trailing NULLs)
 * into |op| as text. */
static void put_params(lua_State *L, int idx, struct pg_op *op, struct pg_stmt *st)
{
    st->param0 = (uint32_t)op->nparams;
    st->nparams = 0;
    if (lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "n");
    int n = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : (int)lua_objlen(L, idx);
    lua_pop(L, 1);
    if (n < 0 || n > PG_MAX_PARAMS) luaL_error(L, "too many parameters (%d)", n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        struct pg_param *p = pg_op_add_param(op);
        char num[64];
        size_t len = 0;
        const char *s = NULL;
        switch (lua_type(L, -1)) {
        case LUA_TNIL:
            break;
        case LUA_TLIGHTUSERDATA:
            if (lua_touserdata(L, -1) != NULL)
                luaL_error(L, "parameter %d is a userdata: give a string, number or boolean", i);
            break;
        case LUA_TBOOLEAN:
            s = lua_toboolean(L, -1) ? "t" : "f";
            len = 1;
            break;
        case LUA_TNUMBER: {
            double d = lua_tonumber(L, -1);
            if (isnan(d))
                len = (size_t)snprintf(num, sizeof(num), "NaN");
            else if (isinf(d))
                len = (size_t)snprintf(num, sizeof(num), d > 0 ? "Infinity" : "-Infinity");
            else if (d == floor(d) && fabs(d) < 9.2e18)
                len = (size_t)snprintf(num, sizeof(num), "%lld", (long long)d);
            else
                len = (size_t)snprintf(num, sizeof(num), "%.17g", d);
            s = num;
            break;
        }
        case LUA_TSTRING:
            s = lua_tolstring(L, -1, &len);
            if (memchr(s, '\0', len))
                luaL_error(L,
                           "parameter %d holds a NUL byte (text parameters cannot; "
                           "send bytea as hex, e.g. '\\x00ff')",
                           i);
            break;
        default:
            luaL_error(L, "parameter %d is a %s: give a string, number, boolean or null", i,
                       luaL_typename(L, -1));
        }
        if (s) {
            p->off = pg_op_put(op, s, len);
            p->len = (int32_t)len;
        } else {
            p->off = 0;
            p->len = -1;
        }
        lua_pop(L, 1);
        st->nparams++;
    }
}

/* Starts |op| and waits for it, or returns its results at once when it ended at once. */
static int run_op(lua_State *L, struct pg_client *c, struct cc_fiber *f, struct pg_op *op)
{
    int nres = -1;
    c->pv->building = NULL; /* filled: it is the queue's now */
    op->fiber = f;
    op->sync = &nres;
    lua_settop(L, 0);
    pg_op_start(c, op);
    if (nres >= 0) return nres; /* finished inside the call: the values are on the stack */
    op->sync = NULL;
    return cc_fiber_wait(L, f, &op->waiter);
}

/*
 * Takes an operation to fill. Argument errors raise (longjmp) while it is being filled; the
 * vm keeps it as |building| until it starts, and the next call takes it back, so a call that
 * raised leaks nothing and a call that did not allocates nothing.
 */
static struct pg_op *begin_op(struct pg_client *c, uint32_t timeout_ms, bool array, bool typed)
{
    struct pg_vm *pv = c->pv;
    struct pg_op *op = pv->building;
    if (op) {
        for (uint32_t i = 0; i < op->nstmts; i++)
            if (op->stmts[i].res) PQclear(op->stmts[i].res);
        op->nstmts = 0;
        op->next = pv->free_ops;
        pv->free_ops = op;
    }
    op = pg_op_new(pv);
    op->timeout_ms = timeout_ms;
    op->array = array;
    op->typed = typed;
    pv->building = op;
    return op;
}

/* The call's options at |timeout_idx|, |array_idx|, |typed_idx| (0: none). */
static struct pg_op *begin_call(lua_State *L, struct pg_client *c, int timeout_idx, int array_idx,
                                int typed_idx)
{
    uint32_t timeout_ms = opt_ms(L, timeout_idx, c->timeout_ms);
    bool array = array_idx && lua_toboolean(L, array_idx);
    bool typed =
        !typed_idx || lua_isnoneornil(L, typed_idx) ? c->typed : lua_toboolean(L, typed_idx);
    return begin_op(c, timeout_ms, array, typed);
}

static const struct cc_ikey *key_for(struct pg_client *c, const char *name, size_t len)
{
    struct cc_recorder *rec = c->pv->vm->rec;
    return rec ? cc_recorder_key(rec, "postgres", 8, name, len) : NULL;
}

/* Fills a statement from the values at |text_idx| (SQL), |params_idx| and |name_idx|. */
static void fill_stmt(lua_State *L, struct pg_client *c, struct pg_op *op, struct pg_stmt *st,
                      int text_idx, int params_idx, int name_idx)
{
    size_t tl;
    const char *text = luaL_checklstring(L, text_idx, &tl);
    if (memchr(text, '\0', tl)) luaL_error(L, "the SQL text holds a NUL byte");
    st->kind = PG_STMT_QUERY;
    st->key = stats_key(L, c, name_idx, text, tl, NULL);
    st->text = pg_op_put(op, text, tl);
    st->text_len = (uint32_t)tl;
    put_params(L, params_idx, op, st);
}

/* Fills an EXECUTE of the prepared statement at |stmt_idx|. */
static void fill_execute(lua_State *L, struct pg_client *c, struct pg_op *op, struct pg_stmt *st,
                         int stmt_idx, int params_idx, int name_idx)
{
    size_t tl;
    const char *stmt = luaL_checklstring(L, stmt_idx, &tl);
    if (memchr(stmt, '\0', tl)) luaL_error(L, "the statement name holds a NUL byte");
    st->kind = PG_STMT_EXECUTE;
    st->key = lua_isnoneornil(L, name_idx) ? key_for(c, stmt, tl)
                                           : stats_key(L, c, name_idx, NULL, 0, NULL);
    st->text = pg_op_put(op, stmt, tl);
    st->text_len = (uint32_t)tl;
    put_params(L, params_idx, op, st);
}

/* c:query(sql, params, name, timeout, array, typed) -> rows | nil, error, sqlstate */
static int l_query(lua_State *L)
{
    struct pg_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    struct pg_op *op = begin_call(L, c, 5, 6, 7);
    fill_stmt(L, c, op, pg_op_add_stmt(op), 2, 3, 4);
    return run_op(L, c, f, op);
}

/* c:execute(statement, params, name, timeout, array, typed) -> rows | nil, error, sqlstate */
static int l_execute(lua_State *L)
{
    struct pg_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    struct pg_op *op = begin_call(L, c, 5, 6, 7);
    fill_execute(L, c, op, pg_op_add_stmt(op), 2, 3, 4);
    return run_op(L, c, f, op);
}

/* c:prepare(statement, sql, name, timeout) -> true | nil, error, sqlstate. Once prepared, the
 * statement is prepared again on every new connection, and preparing it again with the same
 * SQL costs nothing. */
static int l_prepare(lua_State *L)
{
    struct pg_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    size_t nl, sl;
    const char *stmt = luaL_checklstring(L, 2, &nl);
    const char *sql = luaL_checklstring(L, 3, &sl);
    if (memchr(sql, '\0', sl) || memchr(stmt, '\0', nl))
        return luaL_error(L, "the statement holds a NUL byte");
    const char *known = pg_client_prepared(c, stmt);
    if (known && strcmp(known, sql) == 0) { /* prepared on this client already (and again on
                                               each new connection): nothing to do */
        lua_pushboolean(L, 1);
        return 1;
    }
    struct pg_op *op = begin_call(L, c, 5, 0, 0);
    struct pg_stmt *st = pg_op_add_stmt(op);
    st->kind = PG_STMT_PREPARE;
    if (lua_isnoneornil(L, 4)) {
        char name[PG_MAX_NAME + 16];
        int n = snprintf(name, sizeof(name), "PREPARE %.*s", PG_MAX_NAME, stmt);
        st->key = key_for(c, name, (size_t)n);
    } else {
        st->key = stats_key(L, c, 4, NULL, 0, NULL);
    }
    st->text = pg_op_put(op, stmt, nl);
    st->text_len = (uint32_t)nl;
    st->sql = pg_op_put(op, sql, sl);
    st->sql_len = (uint32_t)sl;
    return run_op(L, c, f, op);
}

/*
 * c:pipeline(list, timeout, array, typed) -> results, first error
 * |list| holds { sql, params, name = } or { statement = s, params, name = } tables; they go
 * out in one pipeline (libpq's pipeline mode) and each is recorded as it completes.
 */
static int l_pipeline(lua_State *L)
{
    struct pg_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)lua_objlen(L, 2);
    if (n < 1) return luaL_error(L, "pipeline: give at least one statement");
    struct pg_op *op = begin_call(L, c, 3, 4, 5);
    op->kind = PG_OP_PIPELINE;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1)) return luaL_error(L, "pipeline: entry %d is not a table", i);
        int e = lua_gettop(L);
        lua_getfield(L, e, "statement");
        lua_rawgeti(L, e, 1);
        lua_getfield(L, e, "params");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_rawgeti(L, e, 2);
        }
        lua_getfield(L, e, "name");
        /* e+1 statement, e+2 sql, e+3 params, e+4 name */
        struct pg_stmt *st = pg_op_add_stmt(op);
        if (!lua_isnil(L, e + 1)) {
            fill_execute(L, c, op, st, e + 1, e + 3, e + 4);
        } else {
            if (!lua_isstring(L, e + 2))
                return luaL_error(L, "pipeline: entry %d has no SQL text (its [1])", i);
            fill_stmt(L, c, op, st, e + 2, e + 3, e + 4);
        }
        lua_settop(L, e - 1);
    }
    return run_op(L, c, f, op);
}

/* c:connect() -> true | nil, error: opens the connection now (calls open it when needed). */
static int l_connect(lua_State *L)
{
    struct pg_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    if (c->state == PG_READY && !c->head && PQstatus(c->pg) == CONNECTION_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    struct pg_op *op = begin_op(c, 0, false, true);
    op->kind = PG_OP_CONNECT;
    return run_op(L, c, f, op);
}

/* c:status() -> "idle" | "active" | "intrans" | "inerror" | "down" */
static int l_status(lua_State *L)
{
    struct pg_client *c = check_client(L);
    if (c->state != PG_READY || !c->pg) {
        lua_pushliteral(L, "down");
        return 1;
    }
    switch (PQtransactionStatus(c->pg)) {
    case PQTRANS_IDLE:
        lua_pushliteral(L, "idle");
        break;
    case PQTRANS_ACTIVE:
        lua_pushliteral(L, "active");
        break;
    case PQTRANS_INTRANS:
        lua_pushliteral(L, "intrans");
        break;
    case PQTRANS_INERROR:
        lua_pushliteral(L, "inerror");
        break;
    default:
        lua_pushliteral(L, "down");
        break;
    }
    return 1;
}

/* c:epoch() -> connections made so far (a new one means a reconnect happened) */
static int l_epoch(lua_State *L)
{
    lua_pushnumber(L, check_client(L)->epoch);
    return 1;
}

/* c:tx_begin(): the calls that follow belong to a transaction (their connection must last). */
static int l_tx_begin(lua_State *L)
{
    struct pg_client *c = check_client(L);
    if (c->in_tx)
        return luaL_error(L, "transaction: already inside one (nesting is not supported)");
    c->in_tx = true;
    c->tx_broken = false;
    cc_free(c->tx_error);
    c->tx_error = NULL;
    return 0;
}

/* c:tx_end() -> the first failure inside the transaction (nil if none), connection lost */
static int l_tx_end(lua_State *L)
{
    struct pg_client *c = check_client(L);
    if (c->tx_error)
        lua_pushstring(L, c->tx_error);
    else
        lua_pushnil(L);
    lua_pushboolean(L, c->tx_broken);
    cc_free(c->tx_error);
    c->tx_error = NULL;
    c->in_tx = false;
    c->tx_broken = false;
    return 2;
}

/* c:disconnect(): drops the connection now (a killed user's open transaction goes with it). */
static int l_disconnect(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->c && !u->c->closed && u->c->pv) pg_client_disconnect(u->c, "disconnected");
    return 0;
}

static int l_close(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->c && !u->c->closed && u->c->pv) pg_client_disconnect(u->c, "the client was closed");
    return 0;
}

static int l_gc(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->c) pg_client_release(u->c);
    u->c = NULL;
    return 0;
}

/* core.client{ conninfo=, connect_timeout=, timeout=, typed= } */
static int l_client(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "PostgreSQL clients live in cicada's threads");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "conninfo");
    const char *conninfo = luaL_optstring(L, -1, "");
    lua_getfield(L, 1, "connect_timeout");
    uint32_t connect_ms = opt_ms(L, -1, PG_DEFAULT_TIMEOUT_MS);
    lua_getfield(L, 1, "timeout");
    uint32_t timeout_ms = opt_ms(L, -1, PG_DEFAULT_TIMEOUT_MS);
    lua_getfield(L, 1, "typed");
    bool typed = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &err);
    if (!o) {
        char line[400];
        pg_first_line(err ? err : "out of memory", line, sizeof(line));
        if (err) PQfreemem(err);
        return luaL_error(L, "bad connection string: %s", line);
    }
    PQconninfoFree(o);
    struct client_ud *u = lua_newuserdata(L, sizeof(*u));
    u->c = NULL;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    u->c = pg_client_new(pg_vm_get(vm), conninfo);
    u->c->connect_timeout_ms = connect_ms;
    u->c->timeout_ms = timeout_ms;
    u->c->typed = typed;
    return 1;
}

/* core.stats_name(sql) -> the name the statistics give that SQL text */
static int l_stats_name(lua_State *L)
{
    size_t n;
    const char *sql = luaL_checklstring(L, 1, &n);
    char buf[PG_MAX_NAME + 8];
    lua_pushlstring(L, buf, pg_stats_name(sql, n, buf, sizeof(buf)));
    return 1;
}

/* core.lib_version() -> libpq's version number (150018 for 15.18) */
static int l_lib_version(lua_State *L)
{
    lua_pushinteger(L, PQlibVersion());
    return 1;
}

static const luaL_Reg client_methods[] = {
    {"query", l_query},           {"execute", l_execute},   {"prepare", l_prepare},
    {"pipeline", l_pipeline},     {"connect", l_connect},   {"status", l_status},
    {"epoch", l_epoch},           {"tx_begin", l_tx_begin}, {"tx_end", l_tx_end},
    {"disconnect", l_disconnect}, {"close", l_close},       {NULL, NULL},
};

int pg_lua_open(lua_State *L)
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
    lua_pushcfunction(L, l_stats_name);
    lua_setfield(L, -2, "stats_name");
    lua_pushcfunction(L, l_lib_version);
    lua_setfield(L, -2, "lib_version");
    push_null(L);
    lua_setfield(L, -2, "null");
    return 1;
}
