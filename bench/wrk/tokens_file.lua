-- GET the URL's path with a bearer token taken in turn from a file of pre-made tokens, one per
-- line (BENCH_TOKENS_FILE). Used for the kid flood (issue 7, scenario 4): the file holds tokens
-- whose headers carry random kids the issuer never had, so every request is a JWKS miss.
-- Each wrk thread starts at a different offset so threads don't send the same token together.
-- BENCH_DELAY_MS (optional): pause each connection this long before every request, to cap the
-- flood's rate (run.py's kid flood runs unthrottled and sets the connection count instead).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path_file = os.getenv("BENCH_TOKENS_FILE")
if path_file == nil or path_file == "" then
  error("BENCH_TOKENS_FILE is not set")
end

local tokens = {}
for line in io.lines(path_file) do
  if #line > 0 then
    tokens[#tokens + 1] = line
  end
end
if #tokens == 0 then
  error("no tokens in " .. path_file)
end

local counter = 0
local next_thread = 0
local path = nil

function setup(thread)
  thread:set("bench_thread_index", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  counter = (bench_thread_index or 0) * 7919
  path = wrk.path
end

function request()
  counter = counter + 1
  local t = tokens[(counter % #tokens) + 1]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. t, ["Accept"] = "application/json" })
end

done = bench_done
