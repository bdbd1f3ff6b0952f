-- POST /token with grant_type=refresh_token, each request presenting a refresh token never
-- presented before (bench/harness/chains.py explains the accounting):
--   BENCH_AUTHORIZATION  full Authorization header value (client_secret_basic)
--   BENCH_SEEDS_FILE     fresh refresh tokens, one per line; thread i of BENCH_THREADS takes
--                        lines i, i+n, ... so no two threads share one
--   BENCH_THREADS        wrk's -t (default 1)
-- A thread presents the successor an answer carried (a queue: a connection builds its next
-- request only after its answer was read, so one is always there) and falls back to its seeds
-- only when an answer carried none. With no token left it sends "bench-no-token-left" (answered
-- 400) and counts it. At the end: the usual BENCH_JSON line and a BENCH_CHAIN line of counters.
-- (wrk builds one request before the run to check the script: its token is never sent.)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local auth = os.getenv("BENCH_AUTHORIZATION")
local seeds_file = os.getenv("BENCH_SEEDS_FILE")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
if auth == nil or auth == "" then
  error("BENCH_AUTHORIZATION is not set")
end
if seeds_file == nil or seeds_file == "" then
  error("BENCH_SEEDS_FILE is not set")
end

local COUNTERS = { "built", "from_seeds", "successors", "starved", "renewed", "broken" }

-- Main state: the threads, for their counters in done().
local threads = {}
local next_index = 0

function setup(thread)
  thread:set("bench_thread_index", next_index)
  next_index = next_index + 1
  threads[#threads + 1] = thread
end

-- Each thread's own state (wrk gives every thread a Lua state of its own). The counters are
-- globals so that done() can read them with thread:get().
built, from_seeds, successors, starved, renewed, broken = 0, 0, 0, 0, 0, 0
local seeds = {}
local seed_next = 1
local queue = {}
local q_head, q_tail = 1, 0
local path = nil

function init(args)
  local index = bench_thread_index or 0
  local n = 0
  for line in io.lines(seeds_file) do
    if #line > 0 then
      if n % thread_count == index then
        seeds[#seeds + 1] = line
      end
      n = n + 1
    end
  end
  path = wrk.path
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = auth
  wrk.headers["Accept"] = "application/json"
end

local function next_token()
  if q_head <= q_tail then
    local token = queue[q_head]
    queue[q_head] = nil
    q_head = q_head + 1
    successors = successors + 1
    return token
  end
  if seed_next <= #seeds then
    local token = seeds[seed_next]
    seeds[seed_next] = nil
    seed_next = seed_next + 1
    from_seeds = from_seeds + 1
    return token
  end
  starved = starved + 1
  return "bench-no-token-left"
end

function request()
  built = built + 1
  local body = "grant_type=refresh_token&refresh_token=" .. next_token()
  return wrk.format("POST", path, wrk.headers, body)
end

function response(status, headers, body)
  local successor = nil
  if status == 200 and body ~= nil then
    successor = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  end
  if successor ~= nil then
    q_tail = q_tail + 1
    queue[q_tail] = successor
    renewed = renewed + 1
  else
    broken = broken + 1
  end
end

function done(summary, latency, requests)
  bench_done(summary, latency, requests)
  local parts = {}
  for _, name in ipairs(COUNTERS) do
    local total = 0
    for _, thread in ipairs(threads) do
      total = total + (thread:get(name) or 0)
    end
    parts[#parts + 1] = string.format('"%s":%d', name, total)
  end
  io.write("BENCH_CHAIN {" .. table.concat(parts, ",") .. "}\n")
end
