-- POST /token with a form body and HTTP Basic client authentication (client_secret_basic).
--   BENCH_AUTHORIZATION  full header value, e.g. "Basic YmVuY2g6c2VjcmV0" (run.py builds it)
--   BENCH_BODY           form body, e.g. "grant_type=client_credentials&audience=photos"
--                        (the password grant uses the same script with its own body)
-- The path comes from the URL given to wrk (http://127.0.0.1:PORT/token).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local auth = os.getenv("BENCH_AUTHORIZATION")
local body = os.getenv("BENCH_BODY") or "grant_type=client_credentials"
if auth == nil or auth == "" then
  error("BENCH_AUTHORIZATION is not set")
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = auth
wrk.headers["Accept"] = "application/json"

done = bench_done
