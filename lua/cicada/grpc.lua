-- SPDX-License-Identifier: MIT
-- cicada.grpc: gRPC clients and GrpcUser. Messages are Lua tables, encoded and decoded by
-- cicada's own protobuf codec from a schema: a .proto file (compiled by Debian's protoc), a
-- descriptor set (protoc --descriptor_set_out), or the server's reflection service. Every call
-- is recorded with request_type "grpc", the method's full path as its name and the reply's size
-- as its length, as Locust's gRPC example does. The wire work is in C (cicada.grpc.core).

local core = require "cicada.core"
local gcore = require "cicada.grpc.core"
local class = require "cicada.class"
local signals = require "cicada.signals"

local M = {}

local record = core.record
local checked = signals.checked
local format, concat = string.format, table.concat

M.code_name = gcore.code_name
M.codes = {}
for i = 0, 16 do
    M.codes[gcore.code_name(i)] = i
end

-- ---- schemas -----------------------------------------------------------------------------------

-- A schema as the Lua side keeps it: the C schema, and its methods by every name they answer
-- to. Shared by every client of a thread that loads the same source.
local Schema = {}
Schema.__index = Schema

local function wrap(ud)
    return setmetatable({ ud = ud, methods = {} }, Schema)
end

-- The method of |path| ("pkg.Service/Method", "/pkg.Service/Method" or "pkg.Service.Method"),
-- or nil and a message listing what the schema has.
function Schema:method(path)
    local m = self.methods[path]
    if m then return m end
    m = self.ud:method(path)
    if not m then
        local names = {}
        for _, s in ipairs(self.ud:services()) do
            for _, mm in ipairs(s.methods) do
                names[#names + 1] = s.name .. "/" .. mm.name
            end
        end
        table.sort(names)
        return nil, format("no method %s in the schema (it has: %s)", path,
                           #names > 0 and concat(names, ", ") or "no services")
    end
    self.methods[path] = m
    return m
end

-- Whether the schema has service |name| ("pkg.Service").
function Schema:has_service(name)
    if not self.service_names then
        self.service_names = {}
        for _, s in ipairs(self.ud:services()) do
            self.service_names[s.name] = true
        end
    end
    return self.service_names[name] == true
end

function Schema:encode(type_name, t) return self.ud:encode(type_name, t) end
function Schema:decode(type_name, bytes) return self.ud:decode(type_name, bytes) end
function Schema:services() return self.ud:services() end

local loaded = {} -- this thread's schemas, by source

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local data = f:read("*a")
    f:close()
    return data
end

local function quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

-- A schema from a descriptor set file (protoc --descriptor_set_out --include_imports).
function M.load_descriptor(path)
    local key = "desc:" .. path
    if loaded[key] then return loaded[key] end
    local data, err = read_file(path)
    if not data then error("cannot read the descriptor set " .. path .. ": " .. tostring(err), 2) end
    local ok, ud = pcall(gcore.schema, data)
    if not ok then error(path .. ": " .. tostring(ud), 2) end
    loaded[key] = wrap(ud)
    return loaded[key]
end

-- A schema from a .proto file, compiled with Debian's protoc (package protobuf-compiler): the
-- file's own directory and |import_paths| are searched for its imports.
function M.load_proto(path, import_paths)
    local key = "proto:" .. path .. "|" .. concat(import_paths or {}, "|")
    if loaded[key] then return loaded[key] end
    if not exists(path) then error("cannot read the .proto file " .. path, 2) end
    local dir, file = path:match("^(.*)/([^/]*)$")
    if not dir then dir, file = ".", path end
    if dir == "" then dir = "/" end
    local args = { "protoc", "--include_imports", "-I" .. quote(dir) }
    for _, p in ipairs(import_paths or {}) do
        args[#args + 1] = "-I" .. quote(p)
    end
    local out = os.tmpname()
    args[#args + 1] = "--descriptor_set_out=" .. quote(out)
    args[#args + 1] = quote(file)
    local p = io.popen(concat(args, " ") .. " 2>&1; echo \"protoc-exit:$?\"", "r")
    local text = p and p:read("*a") or ""
    if p then p:close() end
    local status = tonumber(text:match("protoc%-exit:(%d+)%s*$"))
    text = text:gsub("protoc%-exit:%d+%s*$", ""):gsub("%s+$", "")
    local data = status == 0 and read_file(out) or nil
    os.remove(out)
    if status == 127 or (status ~= 0 and text:find("not found", 1, true) and text:find("protoc", 1, true)) then
        error("compiling " .. path .. " needs protoc (Debian package protobuf-compiler), or pass "
              .. "descriptor = a file made by protoc --descriptor_set_out --include_imports", 2)
    end
    if not data then
        error("protoc could not compile " .. path .. ":\n" .. text, 2)
    end
    local ok, ud = pcall(gcore.schema, data)
    if not ok then error(path .. ": " .. tostring(ud), 2) end
    loaded[key] = wrap(ud)
    return loaded[key]
end

-- A schema from a FileDescriptorSet given as bytes, or a list of FileDescriptorProtos.
function M.schema(descriptors)
    return wrap(gcore.schema(descriptors))
end

-- ---- server reflection -------------------------------------------------------------------------

-- The reflection service's messages (grpc/reflection/v1/reflection.proto, identical in
-- v1alpha), written as a FileDescriptorProto by hand: reflection must work without protoc.
local function varint(n)
    local out = {}
    repeat
        local b = n % 128
        n = (n - b) / 128
        out[#out + 1] = string.char(n > 0 and b + 128 or b)
    until n == 0
    return concat(out)
end

local function len_field(num, s) return varint(num * 8 + 2) .. varint(#s) .. s end
local function int_field(num, v) return varint(num * 8) .. varint(v) end

local T_INT32, T_STRING, T_MESSAGE, T_BYTES = 5, 9, 11, 12
local OPTIONAL, REPEATED = 1, 3

local function message(name, fields, oneof)
    local parts = { len_field(1, name) }
    for _, f in ipairs(fields) do
        local fd = len_field(1, f[1]) .. int_field(3, f[2]) .. int_field(4, f[4] or OPTIONAL)
            .. int_field(5, f[3]) .. (f[5] and len_field(6, f[5]) or "")
            .. (f.oneof and int_field(9, 0) or "")
        parts[#parts + 1] = len_field(2, fd)
    end
    if oneof then parts[#parts + 1] = len_field(8, len_field(1, oneof)) end
    return len_field(4, concat(parts))
end

local function reflection_descriptor(version)
    local pkg = "grpc.reflection." .. version
    local P = "." .. pkg .. "."
    local file = {
        len_field(1, "cicada/reflection_" .. version .. ".proto"),
        len_field(2, pkg),
        message("ServerReflectionRequest", {
            { "host", 1, T_STRING },
            { "file_by_filename", 3, T_STRING, oneof = true },
            { "file_containing_symbol", 4, T_STRING, oneof = true },
            { "file_containing_extension", 5, T_MESSAGE, OPTIONAL, P .. "ExtensionRequest", oneof = true },
            { "all_extension_numbers_of_type", 6, T_STRING, oneof = true },
            { "list_services", 7, T_STRING, oneof = true },
        }, "message_request"),
        message("ExtensionRequest", {
            { "containing_type", 1, T_STRING },
            { "extension_number", 2, T_INT32 },
        }),
        message("ServerReflectionResponse", {
            { "valid_host", 1, T_STRING },
            { "original_request", 2, T_MESSAGE, OPTIONAL, P .. "ServerReflectionRequest" },
            { "file_descriptor_response", 4, T_MESSAGE, OPTIONAL, P .. "FileDescriptorResponse", oneof = true },
            { "all_extension_numbers_response", 5, T_MESSAGE, OPTIONAL, P .. "ExtensionNumberResponse", oneof = true },
            { "list_services_response", 6, T_MESSAGE, OPTIONAL, P .. "ListServiceResponse", oneof = true },
            { "error_response", 7, T_MESSAGE, OPTIONAL, P .. "ErrorResponse", oneof = true },
        }, "message_response"),
        message("FileDescriptorResponse", { { "file_descriptor_proto", 1, T_BYTES, REPEATED } }),
        message("ExtensionNumberResponse", {
            { "base_type_name", 1, T_STRING },
            { "extension_number", 2, T_INT32, REPEATED },
        }),
        message("ListServiceResponse", { { "service", 1, T_MESSAGE, REPEATED, P .. "ServiceResponse" } }),
        message("ServiceResponse", { { "name", 1, T_STRING } }),
        message("ErrorResponse", { { "error_code", 1, T_INT32 }, { "error_message", 2, T_STRING } }),
        len_field(6, len_field(1, "ServerReflection") .. len_field(2,
            len_field(1, "ServerReflectionInfo") .. len_field(2, P .. "ServerReflectionRequest")
            .. len_field(3, P .. "ServerReflectionResponse") .. int_field(5, 1) .. int_field(6, 1))),
        len_field(12, "proto3"),
    }
    return concat(file)
end
M.reflection_descriptor = reflection_descriptor

local function reflection_error(what, st)
    return "server reflection " .. what .. ": " .. tostring(st)
end

-- Asks the server's reflection service (v1, else v1alpha) for every service it offers and the
-- files that define them, and builds a schema from them. Runs in a user; raises on failure.
local function reflect(settings, timeout)
    local ch = gcore.channel(settings)
    local last
    for _, version in ipairs({ "v1", "v1alpha" }) do
        ch:set_schema(gcore.schema(len_field(1, reflection_descriptor(version))))
        local call = ch:open(0, timeout or 30, nil, nil, nil, false)
        local function ask(req)
            checked(call:send(req))
            local resp, st = checked(call:recv())
            if not resp then return nil, st end
            if resp.error_response then
                error(reflection_error("failed", format("%s (%d)", resp.error_response.error_message,
                                                        resp.error_response.error_code)), 0)
            end
            return resp
        end
        local resp, st = ask({ list_services = "" })
        if resp then
            local files, order, queue = {}, {}, {}
            local function add(fdp)
                local name, deps = gcore.file_names(fdp)
                if name and not files[name] then
                    files[name] = fdp
                    order[#order + 1] = fdp
                    for _, d in ipairs(deps) do
                        if not files[d] then queue[#queue + 1] = d end
                    end
                end
            end
            for _, s in ipairs(resp.list_services_response.service) do
                if not s.name:find("^grpc%.reflection%.") then
                    local r, st2 = ask({ file_containing_symbol = s.name })
                    if not r then error(reflection_error("failed", st2), 0) end
                    for _, fdp in ipairs(r.file_descriptor_response.file_descriptor_proto) do
                        add(fdp)
                    end
                end
            end
            while #queue > 0 do
                local name = table.remove(queue, 1)
                if not files[name] then
                    local r, st2 = ask({ file_by_filename = name })
                    if not r then error(reflection_error("failed", st2), 0) end
                    for _, fdp in ipairs(r.file_descriptor_response.file_descriptor_proto) do
                        add(fdp)
                    end
                end
            end
            call:cancel()
            ch:close()
            local ok, ud = pcall(gcore.schema, order)
            if not ok then error(reflection_error("gave descriptors that do not load", ud), 0) end
            return wrap(ud)
        end
        last = st
        call:cancel()
        if st.code ~= M.codes.UNIMPLEMENTED then break end
    end
    ch:close()
    error(reflection_error("is not available", last), 0)
end

local reflected = {} -- this thread's schemas from reflection, by target; "loading" meanwhile

-- ---- targets -----------------------------------------------------------------------------------

local DEFAULT_PORT = { http = 80, https = 443, grpc = 80, grpcs = 443 }

-- "host:port", "[::1]:port", "grpc://host:port", "grpcs://...", "http(s)://...", "dns:///host:port"
-- -> host, port, authority, tls (from the scheme; nil when it has none)
function M.parse_target(target)
    if type(target) ~= "string" or target == "" then return nil, "the host must be a string" end
    local s = target
    local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
    local tls
    if scheme then
        scheme = scheme:lower()
        if scheme == "dns" then
            rest = rest:gsub("^[^/]*/", "") -- dns://[authority]/host:port
        elseif DEFAULT_PORT[scheme] then
            tls = scheme == "https" or scheme == "grpcs"
        else
            return nil, "unsupported scheme in '" .. target .. "' (host:port, grpc://, grpcs://, http://, https://)"
        end
        s = rest
    end
    s = s:gsub("/.*$", "")
    local host, port
    if s:sub(1, 1) == "[" then
        host, port = s:match("^%[([^%]]+)%]:?(%d*)$")
    else
        host, port = s:match("^([^:/]+):?(%d*)$")
    end
    if not host or host == "" then return nil, "bad host in '" .. target .. "'" end
    port = tonumber(port)
    if not port then port = scheme and DEFAULT_PORT[scheme] end
    if not port then return nil, "no port in '" .. target .. "' (host:port)" end
    if port < 1 or port > 65535 then return nil, "bad port in '" .. target .. "'" end
    local authority = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
    return host, port, authority, tls
end

-- ---- calls -------------------------------------------------------------------------------------

-- A streaming call. It is recorded once, when the script learns how it ended: recv() or send()
-- meeting the end or a failure, or finish(). A call the script cancels is not recorded.
local Call = {}
Call.__index = Call
M.Call = Call

local function ended(self, st)
    if not self.recorded then
        self.recorded = true
        record("grpc", self.name, st.elapsed_ms, st.length, st.error)
    end
end

-- Sends one message; returns true, or nil and the status when the call has ended.
function Call:send(msg)
    local ok, st = checked(self.core:send(msg))
    if not ok then ended(self, st) end
    return ok, st
end

-- Ends the request (the server sees the end of the stream).
function Call:close_send()
    local ok, st = self.core:close_send()
    if not ok then ended(self, st) end
    return ok, st
end

-- The next message, or nil and the status at the end (status.ok when all went well).
function Call:recv()
    local msg, st = checked(self.core:recv())
    if msg == nil then ended(self, st) end
    return msg, st
end

-- The response head's metadata (a table), or nil and the status if the call ended without.
function Call:headers()
    local h, st = checked(self.core:headers())
    if h == nil then ended(self, st) end
    return h, st
end

-- Waits for the end (closing the request first if need be) and returns the status; messages
-- not read are dropped (their bytes still count in the call's length).
function Call:finish()
    local st = checked(self.core:finish())
    ended(self, st)
    return st
end

-- Cancels the call (RST_STREAM CANCEL); it is not recorded.
function Call:cancel()
    self.recorded = true
    return self.core:cancel()
end

-- The status once the call has ended, else nil.
function Call:status()
    return self.core:status()
end

-- for msg in call:messages() do ... end: the messages until the end; call:status() then says
-- how it ended.
function Call:messages()
    return function()
        return (self:recv())
    end
end

-- ---- clients -----------------------------------------------------------------------------------

local Client = {}
Client.__index = Client
M.Client = Client

local EMPTY = {}

-- A client: its own HTTP/2 connection (h2c, or TLS with ALPN h2) to one server.
--   host              "host:port", "grpcs://host:port"...
--   tls               true/false: overrides the scheme (default: TLS for grpcs:// and https://)
--   proto, import_paths | descriptor | schema | reflection = true   where messages come from
--   timeout           default deadline of each call, seconds (nil: none)
--   metadata          sent with every call: { name = value or { values } }
--   max_message       longest message received (bytes, default 4 MiB)
--   connect_timeout, network_timeout (no sign of life for this long fails a call; 0: never),
--   verify, ca_file, cert_file, key_file, authority, source_addresses
function M.client(opts)
    opts = opts or EMPTY
    local host, port, authority, tls = M.parse_target(opts.host)
    if not host then error(port, 2) end
    if opts.tls ~= nil then tls = opts.tls end
    local settings = {
        host = host,
        port = port,
        authority = opts.authority or authority,
        tls = tls or false,
        max_message = opts.max_message,
        connect_timeout = opts.connect_timeout,
        timeout = opts.network_timeout,
        verify = opts.verify,
        ca_file = opts.ca_file,
        cert_file = opts.cert_file,
        key_file = opts.key_file,
        source_addresses = opts.source_addresses,
    }
    local self = setmetatable({
        channel = gcore.channel(settings),
        settings = settings,
        target = (tls and "tls:" or "") .. authority,
        timeout = opts.timeout,
        metadata = opts.metadata,
        reflection = opts.reflection,
    }, Client)
    local schema = opts.schema
    if not schema and opts.descriptor then schema = M.load_descriptor(opts.descriptor) end
    if not schema and opts.proto then schema = M.load_proto(opts.proto, opts.import_paths) end
    if schema then
        self:set_schema(schema)
    elseif not opts.reflection then
        error("a gRPC client needs its messages: proto = \"file.proto\", descriptor = "
              .. "\"file.desc\", or reflection = true", 2)
    end
    return self
end

function Client:set_schema(schema)
    self.schema = schema
    self.channel:set_schema(schema.ud)
end

-- The schema, from the server's reflection service the first time (once per thread and
-- server; users that ask meanwhile wait for it).
function Client:load_schema()
    if self.schema then return self.schema end
    local key = self.target
    while reflected[key] == "loading" do
        checked(core.sleep(0.01))
    end
    local s = reflected[key]
    if not s then
        reflected[key] = "loading"
        local ok, res = pcall(reflect, self.settings, self.timeout)
        if not ok then
            reflected[key] = nil
            error(res, 0)
        end
        reflected[key] = res
        s = res
    end
    self:set_schema(s)
    return s
end

local function method_of(self, path, level)
    local s = self.schema or self:load_schema()
    local m, err = s:method(path)
    if not m then error(err, level + 1) end
    return m
end

-- Opens a streaming call of any kind. |first| (optional) is sent first; for a unary or
-- server-streaming method the request then ends, so only recv() remains.
--   opts: timeout (deadline, s), metadata, name (in the statistics; default the method's path)
function Client:open(path, opts, first)
    local m = method_of(self, path, 2)
    opts = opts or EMPTY
    local timeout = opts.timeout or self.timeout
    local close = first ~= nil and (m.kind == "unary" or m.kind == "server_streaming")
    local c = self.channel:open(m.index, timeout, opts.metadata, self.metadata, first, close)
    return setmetatable({ core = c, name = opts.name or m.path, kind = m.kind }, Call)
end

-- Calls |path| ("pkg.Service/Method") with |request| and records the call.
--   unary             request: a table          returns reply, status | nil, status
--   server streaming  request: a table          returns { replies }, status | nil, status
--   client streaming  request: list of tables   returns reply, status | nil, status
--   bidi streaming    request: list of tables   returns { replies }, status | nil, status
-- status: .ok, .code, .name, .message, .error ("UNAVAILABLE: ..."), .headers, .trailers,
-- .elapsed_ms, .length. opts: timeout (deadline, s), metadata, name.
function Client:call(path, request, opts)
    local s = self.schema
    local m = s and s.methods[path] or method_of(self, path, 2)
    local kind = m.kind
    if kind == "unary" then
        local timeout, meta, name
        if opts then
            timeout, meta, name = opts.timeout, opts.metadata, opts.name
        end
        local reply, st, ms, len, err = checked(self.channel:unary(m.index, request,
                                                                   timeout or self.timeout, meta,
                                                                   self.metadata))
        record("grpc", name or m.path, ms, len, err)
        return reply, st
    end
    if kind == "server_streaming" then
        local c = self:open(path, opts, request)
        local replies = {}
        while true do
            local msg, st = c:recv()
            if msg == nil then
                if st.ok then return replies, st end
                return nil, st
            end
            replies[#replies + 1] = msg
        end
    end
    if type(request) ~= "table" then
        error(m.path .. " is " .. kind:gsub("_", "-") .. ": pass a list of request messages", 2)
    end
    local c = self:open(path, opts)
    for i = 1, #request do
        local ok, st = c:send(request[i])
        if not ok then return nil, st end
    end
    c:close_send()
    local replies = {}
    while true do
        local msg, st = c:recv()
        if msg == nil then
            if not st.ok then return nil, st end
            if kind == "client_streaming" then return replies[1], st end
            return replies, st
        end
        replies[#replies + 1] = msg
    end
end

-- A stub: service.Method(service, request, opts) calls "pkg.Service/Method", as a generated
-- stub does (`self.stub:SayHello({ name = "x" })`).
function Client:service(name)
    local client = self
    if self.schema and not self.schema:has_service(name) then
        error("no service " .. name .. " in the schema", 2)
    end
    return setmetatable({}, {
        __index = function(t, k)
            local path = name .. "/" .. k
            if client.schema and not client.schema:method(path) then
                error("service " .. name .. " has no method " .. tostring(k), 2)
            end
            local f = function(_, request, opts)
                return client:call(path, request, opts)
            end
            rawset(t, k, f)
            return f
        end,
    })
end

-- Encoding and decoding with the client's schema (for tests and custom framing).
function Client:encode(type_name, t) return (self.schema or self:load_schema()):encode(type_name, t) end
function Client:decode(type_name, b) return (self.schema or self:load_schema()):decode(type_name, b) end

function Client:close()
    self.channel:close()
end

-- ---- GrpcUser ----------------------------------------------------------------------------------

M.GrpcUser = class.User:extend("GrpcUser", {
    abstract = true,
    connect_timeout = 60, -- seconds: TCP connect and TLS handshake
    network_timeout = 60, -- seconds without any sign of life from a call's stream; 0: never
    verify = true,        -- TLS certificate verification
    -- proto = "x.proto" (with import_paths), descriptor = "x.desc", or reflection = true
    -- timeout = seconds: each call's deadline; metadata = { ... }: sent with every call
    -- service = "pkg.Service": self.stub calls its methods
})

local GrpcUser = M.GrpcUser

local function where(cls)
    return (rawget(cls, "__defined_at") or "?") .. ": " .. (rawget(cls, "__name") or "the class")
end

-- Checked when the script loads: a host, and where the messages come from (loaded now, so that
-- a .proto that does not compile stops the run before it starts).
function GrpcUser.__validate(cls)
    if not cls.host then
        error(where(cls) .. " has no host: set host = \"127.0.0.1:50051\" in the class, or pass "
              .. "-H/--host", 0)
    end
    local ok, err = M.parse_target(cls.host)
    if not ok then error(where(cls) .. ": " .. err, 0) end
    if not (cls.proto or cls.descriptor or cls.reflection or cls.schema) then
        error(where(cls) .. " has no messages: set proto = \"file.proto\", descriptor = "
              .. "\"file.desc\" or reflection = true", 0)
    end
    local lok, lerr = pcall(function()
        if cls.descriptor then
            M.load_descriptor(cls.descriptor)
        elseif cls.proto then
            M.load_proto(cls.proto, cls.import_paths)
        end
    end)
    if not lok then error(where(cls) .. ": " .. tostring(lerr), 0) end
end

-- Each user gets its own client, so its own HTTP/2 connection, as Locust's GrpcUser makes its
-- own channel.
function GrpcUser.__construct(self)
    local insecure = (self.environment and self.environment.parsed_options or EMPTY).insecure
    self.client = M.client({
        host = self.host,
        tls = self.tls,
        proto = self.proto,
        import_paths = self.import_paths,
        descriptor = self.descriptor,
        schema = self.schema,
        reflection = self.reflection,
        timeout = self.timeout,
        metadata = self.metadata,
        max_message = self.max_message,
        connect_timeout = self.connect_timeout,
        network_timeout = self.network_timeout,
        verify = self.verify and not insecure,
        ca_file = self.ca_file,
        cert_file = self.cert_file,
        key_file = self.key_file,
        authority = self.authority,
        source_addresses = self.source_addresses,
    })
    if self.service then self.stub = self.client:service(self.service) end
end

return M
