-- SPDX-License-Identifier: MIT
-- cicada.postgres: a PostgreSQL client on libpq's asynchronous API, and PostgresUser. Every
-- statement is one request event (request_type "postgres", named by the call or after its SQL
-- text); the wire work and the statistics are in C (cicada.postgres.core).

local core = require "cicada.core"
local pcore = require "cicada.postgres.core"
local class = require "cicada.class"
local signals = require "cicada.signals"

local M = {}

local checked, is_signal = signals.checked, signals.is_signal
local record, monotonic = core.record, core.monotonic
local type, select, unpack = type, select, unpack
local EMPTY = {}

local function pack(...)
    return { n = select("#", ...), ... }
end

-- SQL NULL in results and parameters (the same value as cjson.null).
M.null = pcore.null
-- The statistics name of an SQL text, as calls without a name get it.
M.stats_name = pcore.stats_name

local Client = {}
Client.__index = Client
M.Client = Client

-- A client: opts.conninfo is a libpq connection string ("host=127.0.0.1 dbname=app") or URL
-- ("postgresql://user:pw@127.0.0.1:5432/app"); connect_timeout and timeout in seconds; typed
-- (default true) gives int, float and bool columns as Lua numbers and booleans. The connection
-- opens on the first call (or client:connect()) and again after it is lost.
function M.client(opts)
    if type(opts) == "string" then opts = { conninfo = opts } end
    opts = opts or EMPTY
    return setmetatable({
        core = pcore.client({
            conninfo = opts.conninfo or opts.dsn or "",
            connect_timeout = opts.connect_timeout,
            timeout = opts.timeout,
            typed = opts.typed,
        }),
    }, Client)
end

-- The options argument: a table, or a string that is the name.
local function options(opts)
    if opts == nil then return nil, nil, nil, nil end
    if type(opts) == "string" then return opts, nil, nil, nil end
    return opts.name, opts.timeout, opts.array, opts.typed
end

-- client:query(sql, [params], [opts]) -> rows | nil, error, sqlstate
-- params: a list ({ 42, "x", cicada.postgres.null }; `n = 3` when it ends in NULLs);
-- opts: a name (string) or { name =, timeout =, array =, typed = }.
function Client:query(sql, params, opts)
    if opts == nil then return checked(self.core:query(sql, params)) end
    local name, timeout, array, typed = options(opts)
    return checked(self.core:query(sql, params, name, timeout, array, typed))
end

-- client:prepare(statement, sql, [opts]) -> true | nil, error, sqlstate
-- The statement is prepared again on every new connection of this client.
function Client:prepare(statement, sql, opts)
    local name, timeout = options(opts)
    return checked(self.core:prepare(statement, sql, name, timeout))
end

-- client:execute(statement, [params], [opts]) -> rows | nil, error, sqlstate
-- Runs a prepared statement; recorded under the statement's name unless opts names it.
function Client:execute(statement, params, opts)
    if opts == nil then return checked(self.core:execute(statement, params)) end
    local name, timeout, array, typed = options(opts)
    return checked(self.core:execute(statement, params, name, timeout, array, typed))
end

-- A pipeline collector: p:query(sql, params, opts) and p:execute(statement, params, opts).
local Collector = {}
Collector.__index = Collector

function Collector:query(sql, params, opts)
    local name = options(opts)
    self.list[#self.list + 1] = { sql, params, name = name }
end

function Collector:execute(statement, params, opts)
    local name = options(opts)
    self.list[#self.list + 1] = { statement = statement, params = params, name = name }
end

-- client:pipeline(list | function(p) ... end, [opts]) -> results, first error
-- Sends every statement at once (libpq's pipeline mode) and waits for all. |list| holds
-- { sql, params, name = } or { statement = s, params, name = } tables; a function gets a
-- collector with query() and execute(). results[i] is the rows of statement i, or for one that
-- failed a table with `error` and `sqlstate` (after a failure the rest do not run). Each
-- statement is recorded on its own.
function Client:pipeline(list, opts)
    if type(list) == "function" then
        local p = setmetatable({ list = {} }, Collector)
        list(p)
        list = p.list
    end
    local _, timeout, array, typed = options(opts)
    return checked(self.core:pipeline(list, timeout, array, typed))
end

-- client:transaction(fn, [opts]) -> fn's results | nil, error
-- BEGIN, then fn(client), then COMMIT. An error raised in fn rolls back and is raised again;
-- a statement that failed inside (the transaction is aborted then) rolls back and returns
-- nil and that failure. opts.isolation ("serializable", "repeatable read", "read committed"),
-- opts.read_only, and opts.name: the whole transaction is also recorded under that name.
function Client:transaction(fn, opts)
    opts = opts or EMPTY
    local c = self.core
    local t0 = monotonic()
    local begin = "BEGIN"
    if opts.isolation then begin = begin .. " ISOLATION LEVEL " .. opts.isolation:upper() end
    if opts.read_only then begin = begin .. " READ ONLY" end
    c:tx_begin()
    local _, err = checked(c:query(begin, nil, "BEGIN"))
    local function done(e)
        if opts.name then record("postgres", opts.name, (monotonic() - t0) * 1000, 0, e) end
    end
    if err then
        c:tx_end()
        done(err)
        return nil, err
    end
    local res = pack(pcall(fn, self))
    if not res[1] then
        local e = res[2]
        if e == signals.Killed then
            -- this user cannot wait any more: the server rolls back when the connection goes
            c:tx_end()
            c:disconnect()
            error(e, 0)
        end
        local _, lost = c:tx_end()
        if not lost then checked(c:query("ROLLBACK", nil, "ROLLBACK")) end
        if not is_signal(e) then done(tostring(e)) end
        error(e, 0)
    end
    local failure, lost = c:tx_end()
    if lost then
        failure = failure or "connection lost during the transaction"
    elseif failure or c:status() == "inerror" then
        checked(c:query("ROLLBACK", nil, "ROLLBACK"))
        failure = failure or "the transaction was aborted"
    else
        _, err = checked(c:query("COMMIT", nil, "COMMIT"))
        failure = err
    end
    done(failure)
    if failure then return nil, failure end
    return unpack(res, 2, res.n)
end

-- client:connect() -> true | nil, error: opens the connection now (recorded as "connect").
function Client:connect()
    return checked(self.core:connect())
end

-- "idle", "intrans" (in a transaction), "inerror" (in a failed one), "active" or "down".
function Client:status()
    return self.core:status()
end

-- Closes the connection; a later call opens a new one.
function Client:close()
    self.core:close()
end

-- ---- PostgresUser ----------------------------------------------------------------------------

M.PostgresUser = class.User:extend("PostgresUser", {
    abstract = true,
    connect_timeout = 60, -- seconds
    query_timeout = 60,   -- seconds for a call's results
    typed = true,         -- int, float and bool columns as Lua values
})

local PostgresUser = M.PostgresUser

-- Checked when the script loads: a PostgresUser needs a connection string.
function PostgresUser.__validate(cls)
    if not cls.host then
        error((rawget(cls, "__defined_at") or "?") .. ": " .. (rawget(cls, "__name") or "the class")
            .. " has no host: set host = \"postgresql://user@127.0.0.1:5432/db\" (or a libpq "
            .. "connection string) in the class, or pass -H/--host", 0)
    end
end

-- Each user gets its own client, hence its own connection.
function PostgresUser.__construct(self)
    self.client = M.client({
        conninfo = self.host,
        connect_timeout = self.connect_timeout,
        timeout = self.query_timeout,
        typed = self.typed,
    })
end

return M
