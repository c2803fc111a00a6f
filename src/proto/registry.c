/* SPDX-License-Identifier: MIT */
/* registry.c: the protocol modules scripts can require, preloaded into every Lua state. */
#include "proto/registry.h"
#include "lua/api.h"
#include "proto/browser/browser_lua.h"
#include "proto/grpc/grpc_lua.h"
#include "proto/http/http_lua.h"
#include "proto/kafka/kafka_lua.h"
#include "proto/mqtt/mqtt_lua.h"
#include "proto/openai/openai_lua.h"
#include "proto/pg/pg_lua.h"
#include "proto/redis/redis_lua.h"
#include "proto/socket/sock_lua.h"
#include "proto/socketio/socketio_lua.h"
#include "proto/ws/ws_lua.h"
#include "proto/xmlrpc/xmlrpc_lua.h"

static const struct {
    const char *name;
    lua_CFunction open;
} modules[] = {
    {"cicada.http.core", http_lua_open},
    {"cicada.grpc.core", grpc_lua_open},
    {"cicada.xmlrpc.core", xmlrpc_lua_open},
    {"cicada.postgres.core", pg_lua_open},
    {"cicada.kafka.core", kafka_lua_open},
    {"cicada.mqtt.core", mqtt_lua_open},
    {"cicada.redis.core", redis_lua_open},
    {"cicada.ws.core", ws_lua_open},
    {"cicada.socketio.core", socketio_lua_open},
    {"cicada.openai.core", openai_lua_open},
    {"cicada.browser.core", browser_lua_open},
    /* cooperative LuaSocket and LuaSec: ahead of Debian's blocking C modules */
    {"cicada.socket.core", sock_lua_open},
    {"socket.core", sock_lua_open_socket_core},
    {"ssl", sock_lua_open_ssl},
    {"ssl.core", sock_lua_open_refused},
    {"ssl.context", sock_lua_open_refused},
    {"socket.unix", sock_lua_open_refused},
    {"socket.serial", sock_lua_open_refused},
};

void cc_proto_preload(lua_State *L)
{
    for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++)
        cc_api_preload(L, modules[i].name, modules[i].open);
}
