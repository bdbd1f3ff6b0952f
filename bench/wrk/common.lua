-- Shared by the Keyhouse wrk scripts: prints one machine-readable line at the end of a run.
-- run.py parses the line that starts with "BENCH_JSON " (latencies in microseconds).
function bench_done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end

-- BENCH_DELAY_MS: each connection waits this long before its next request (a paced probe
-- instead of a closed loop).
local bench_delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if bench_delay_ms ~= nil and bench_delay_ms > 0 then
  function delay()
    return bench_delay_ms
  end
end
