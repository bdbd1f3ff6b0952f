-- GET the URL's path with a DPoP-bound access token and a fresh DPoP proof on every request
-- (RFC 9449 §7.1; bench/harness/dpop_proofs.py makes the proofs, wrk's Lua cannot sign):
--   BENCH_TOKEN        the access token, sent as "Authorization: DPoP <token>"
--   BENCH_PROOFS_FILE  proofs, one per line; thread i of BENCH_THREADS takes lines i, i+n, ...
--   BENCH_THREADS      wrk's -t (default 1)
-- Each proof is sent at most once. A thread with none left sends "bench-no-proof-left" (answered
-- 401) and counts it: the run is then refused, never measured. At the end: the usual BENCH_JSON
-- line and a BENCH_DPOP line of counters ("sent", "starved"), summed over the threads.
-- (wrk builds one request in its main state to check the script: it is never sent, and the
-- main state holds no proof.)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local token = os.getenv("BENCH_TOKEN")
local proofs_file = os.getenv("BENCH_PROOFS_FILE")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
if token == nil or token == "" then
  error("BENCH_TOKEN is not set")
end
if proofs_file == nil or proofs_file == "" then
  error("BENCH_PROOFS_FILE is not set")
end

local threads = {}
local next_index = 0

function setup(thread)
  thread:set("bench_thread_index", next_index)
  next_index = next_index + 1
  threads[#threads + 1] = thread
end

-- Per thread (each has a Lua state of its own); globals so that done() can read them.
sent, starved = 0, 0
local proofs = {}
local proof_next = 1
local path = nil
local authorization = "DPoP " .. token

function init(args)
  local index = bench_thread_index or 0
  local n = 0
  for line in io.lines(proofs_file) do
    if #line > 0 then
      if n % thread_count == index then
        proofs[#proofs + 1] = line
      end
      n = n + 1
    end
  end
  path = wrk.path
end

function request()
  local proof
  if proof_next <= #proofs then
    proof = proofs[proof_next]
    proofs[proof_next] = nil
    proof_next = proof_next + 1
    sent = sent + 1
  else
    proof = "bench-no-proof-left"
    starved = starved + 1
  end
  return wrk.format("GET", path, {
    ["Authorization"] = authorization,
    ["DPoP"] = proof,
    ["Accept"] = "application/json",
  })
end

function done(summary, latency, requests)
  bench_done(summary, latency, requests)
  local s, t = 0, 0
  for _, thread in ipairs(threads) do
    s = s + (thread:get("sent") or 0)
    t = t + (thread:get("starved") or 0)
  end
  io.write(string.format('BENCH_DPOP {"sent":%d,"starved":%d}\n', s, t))
end
