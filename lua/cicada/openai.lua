-- SPDX-License-Identifier: MIT
-- cicada.openai: a client for OpenAI-compatible APIs (chat completions, completions,
-- embeddings; streamed or not) and OpenAIUser. Each request is recorded as Locust's OpenAIUser
-- records it (POST <path>, response length = output tokens), and its LLM metrics each as an
-- entry of their own: TTFT, ITL, TPOT, E2E, TOKENS, TOKEN/S, and GOODPUT against service
-- levels. The wire work and the metrics are in C (cicada.openai.core); see docs/openai.md.

local core = require "cicada.core"
local ocore = require "cicada.openai.core"
local url = require "cicada.url"
local class = require "cicada.class"
local signals = require "cicada.signals"

local ok_cjson, cjson = pcall(require, "cjson")
if not ok_cjson then error("cicada.openai needs lua-cjson (Debian package lua-cjson)", 2) end

local M = {}

local checked = signals.checked
local encode, decode = cjson.encode, cjson.decode
local format = string.format
local EMPTY = {}
local USER_AGENT = "cicada/" .. core.version

M.null = cjson.null

-- ---- service levels ----------------------------------------------------------------------------

local SLO_NAMES = { ttft_ms = true, tpot_ms = true, itl_ms = true, e2e_ms = true,
                    tokens_per_s = true }

-- "ttft_ms=500,tpot_ms=50" -> { ttft_ms = 500, tpot_ms = 50 }; raises on a bad one.
function M.parse_slo(s)
    if s == nil or s == "" then return nil end
    if type(s) == "table" then
        for k, v in pairs(s) do
            if not SLO_NAMES[k] then error("unknown service level '" .. tostring(k) .. "'", 0) end
            if type(v) ~= "number" or v < 0 then error("service level " .. k .. " must be a number", 0) end
        end
        return s
    end
    local t = {}
    for item in tostring(s):gmatch("[^,%s]+") do
        local k, v = item:match("^([%w_]+)[=:]([%d.]+)$")
        if not k or not tonumber(v) then
            error("--slo: '" .. item .. "' is not NAME=NUMBER (ttft_ms, tpot_ms, itl_ms, "
                .. "e2e_ms, tokens_per_s)", 0)
        end
        if not SLO_NAMES[k] then
            error("--slo: unknown service level '" .. k .. "' (ttft_ms, tpot_ms, itl_ms, e2e_ms, "
                .. "tokens_per_s)", 0)
        end
        t[k] = tonumber(v)
    end
    return t
end

-- ---- results -----------------------------------------------------------------------------------

local Result = {}
Result.__index = Result

-- The body of a non-streamed response (keep_body = true), parsed.
function Result:json()
    if not self.body then error("the response body was not kept: pass keep_body = true", 2) end
    return decode(self.body)
end

-- Raises the request's error, if it failed.
function Result:raise_for_status()
    if not self.ok then error(self.error, 2) end
    return self
end

-- ---- clients -----------------------------------------------------------------------------------

local Client = {}
Client.__index = Client
M.Client = Client

-- A client: opts base_url (an OpenAI-compatible server; "/v1" is added when it has no path),
-- api_key (default: the OPENAI_API_KEY environment variable), model (the default model),
-- headers, stream (default true), include_usage (default true: ask streams for a usage chunk),
-- timeout (seconds without a byte, default 600), connect_timeout, verify, ca_file, cert_file,
-- key_file, max_conns, slo (service levels for goodput, a table or "ttft_ms=500,...").
function M.client(opts)
    opts = opts or {}
    if not opts.base_url then error("an OpenAI client needs a base URL: set host or pass -H", 2) end
    local u, err = url.parse(opts.base_url)
    if not u then error("bad host: " .. err, 2) end
    if u.scheme ~= "http" and u.scheme ~= "https" then
        error("bad host: the scheme must be http:// or https://", 2)
    end
    local c = ocore.client({
        connect_timeout = opts.connect_timeout,
        timeout = opts.timeout or 600,
        max_body = opts.max_body,
        max_conns = opts.max_conns,
        verify = opts.verify,
        ca_file = opts.ca_file,
        cert_file = opts.cert_file,
        key_file = opts.key_file,
    })
    local self = setmetatable({
        core = c,
        opts = opts,
        prefix = u.path ~= "/" and (u.path:gsub("/$", "")) or "/v1",
        pool = c:pool(u.scheme == "https", u.host, u.port, url.authority(u)),
        model = opts.model,
        stream = opts.stream ~= false,
        include_usage = opts.include_usage ~= false,
        api_key = opts.api_key == nil and os.getenv("OPENAI_API_KEY") or opts.api_key,
    }, Client)
    local slo = M.parse_slo(opts.slo)
    if slo then c:set_slo(slo) end
    self.slo = slo
    return self
end

-- The header list of a request.
function Client:headers(stream, extra)
    local list = { "Content-Type", "application/json",
                   "Accept", stream and "text/event-stream" or "application/json",
                   "User-Agent", USER_AGENT }
    if self.api_key and self.api_key ~= "" then
        list[#list + 1] = "Authorization"
        list[#list + 1] = "Bearer " .. self.api_key
    end
    for _, h in ipairs({ self.opts.headers or EMPTY, extra or EMPTY }) do
        for k, v in pairs(h) do
            if tostring(k):lower() ~= "content-length" then -- the client sets the body's own
                list[#list + 1] = k
                list[#list + 1] = tostring(v)
            end
        end
    end
    return list
end

-- request(path, body, [opts]) -> result. POSTs the table |body| as JSON to the API path (after
-- the base URL's prefix, "/v1" by default) and waits for the whole response. When body.stream
-- is true the response is read as an event stream. opts: name (in the statistics; false:
-- not recorded), headers, timeout, text (keep the output text, default true), keep_body (keep
-- a non-streamed body: result.body, result:json()).
function Client:request(path, body, opts)
    opts = opts or EMPTY
    local stream = body.stream == true
    local target = self.prefix .. path
    local name = opts.name
    if name == nil then name = self.rename or target end
    local r = checked(self.core:post(self.pool, target, self:headers(stream, opts.headers),
                                     encode(body), {
        stream = stream,
        name = name,
        text = opts.text,
        keep_body = opts.keep_body,
        timeout = opts.timeout,
    }))
    return setmetatable(r, Result)
end

-- Fills the body's common fields: model, stream and its usage chunk, and opts.params.
local function prepare(self, body, opts, streamable)
    if body.model == nil then body.model = self.model end
    if body.model == nil then error("no model: set model on the client (or the user class) or in the request", 3) end
    if streamable then
        local stream = opts.stream
        if stream == nil then stream = body.stream end
        if stream == nil then stream = self.stream end
        body.stream = stream and true or nil
        if stream and self.include_usage and body.stream_options == nil then
            body.stream_options = { include_usage = true }
        end
    end
    for k, v in pairs(opts.params or EMPTY) do
        body[k] = v
    end
    return body
end

local function copy(t)
    local out = {}
    for k, v in pairs(t) do
        out[k] = v
    end
    return out
end

-- chat(messages_or_prompt_or_body, [opts]) -> result. A chat completion: a string is one user
-- message, a list is the messages, a table with .messages is the whole request body. opts:
-- model, stream, max_tokens, temperature, params (more body fields), name, headers, timeout.
function Client:chat(input, opts)
    opts = opts or EMPTY
    local body
    if type(input) == "string" then
        body = { messages = { { role = "user", content = input } } }
    elseif type(input) == "table" and input.messages then
        body = copy(input)
    elseif type(input) == "table" then
        body = { messages = input }
    else
        error("chat: give a prompt string, a list of messages or a request body", 2)
    end
    if opts.model then body.model = opts.model end
    if opts.max_tokens then body.max_tokens = opts.max_tokens end
    if opts.temperature then body.temperature = opts.temperature end
    return self:request("/chat/completions", prepare(self, body, opts, true), opts)
end

-- completion(prompt_or_body, [opts]) -> result: the legacy completions API.
function Client:completion(input, opts)
    opts = opts or EMPTY
    local body = type(input) == "table" and input.prompt and copy(input) or { prompt = input }
    if opts.model then body.model = opts.model end
    if opts.max_tokens then body.max_tokens = opts.max_tokens end
    if opts.temperature then body.temperature = opts.temperature end
    return self:request("/completions", prepare(self, body, opts, true), opts)
end

-- embeddings(input_or_body, [opts]) -> result (result.embeddings: how many came back).
function Client:embeddings(input, opts)
    opts = opts or EMPTY
    local body = type(input) == "table" and input.input and copy(input) or { input = input }
    if opts.model then body.model = opts.model end
    return self:request("/embeddings", prepare(self, body, opts, false), opts)
end

-- Groups every request made inside fn under one name (Locust's rename_request), and closes:
-- as the HTTP client does, whose fields (rename, core) these are too.
local Session = require("cicada.http").Session
Client.rename_request = Session.rename_request
Client.close = Session.close

-- ---- OpenAIUser ------------------------------------------------------------------------------

M.OpenAIUser = class.User:extend("OpenAIUser", {
    abstract = true,
    stream = true,        -- stream responses (server-sent events): the token timings need it
    include_usage = true, -- ask streams for their usage chunk
    timeout = 600,        -- seconds without a response byte
    verify = true,
    concurrency = 6,      -- connections per user
})

local OpenAIUser = M.OpenAIUser

function OpenAIUser.__validate(cls)
    local where = (rawget(cls, "__defined_at") or "?") .. ": "
    if not cls.host then
        error(where .. (rawget(cls, "__name") or "the class") .. " has no host: set host = "
            .. "\"http://...\" (the API's base URL) in the class, or pass -H/--host", 0)
    end
    local ok, err = url.parse(cls.host)
    if not ok then error(where .. "bad host: " .. err, 0) end
    local ok2, err2 = pcall(M.parse_slo, cls.slo)
    if not ok2 then error(where .. err2, 0) end
    local cli = (require("cicada").env.parsed_options or EMPTY).slo
    local ok3, err3 = pcall(M.parse_slo, cli)
    if not ok3 then error(err3, 0) end
end

-- Service levels: the class's slo, with --slo (which wins) on top.
local function slo_of(self)
    local t = {}
    for k, v in pairs(M.parse_slo(self.slo) or EMPTY) do
        t[k] = v
    end
    local cli = (self.environment.parsed_options or EMPTY).slo
    for k, v in pairs(M.parse_slo(cli) or EMPTY) do
        t[k] = v
    end
    return next(t) and t or nil
end

-- Each user gets its own client, self.client.
function OpenAIUser.__construct(self)
    self.client = M.client({
        base_url = self.host,
        api_key = self.api_key,
        model = self.model,
        headers = self.headers,
        stream = self.stream,
        include_usage = self.include_usage,
        timeout = self.timeout,
        connect_timeout = self.connect_timeout,
        verify = self.verify and not (self.environment.parsed_options or EMPTY).insecure,
        ca_file = self.ca_file,
        cert_file = self.cert_file,
        key_file = self.key_file,
        max_conns = self.concurrency,
        slo = slo_of(self),
    })
end

return M
