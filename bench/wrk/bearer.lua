-- GET the URL's path with "Authorization: Bearer $BENCH_TOKEN" (no header when BENCH_TOKEN is
-- empty, so the same script measures unauthenticated endpoints such as /healthz and the JWKS).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local token = os.getenv("BENCH_TOKEN")
wrk.method = "GET"
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.headers["Accept"] = "application/json"

done = bench_done
