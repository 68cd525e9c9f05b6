-- wrk script for bench/load.py: POST one fixed body on every request, and print one
-- machine-readable summary line at the end.
--   WRK_BODY_FILE     file holding the request body
--   WRK_CONTENT_TYPE  its Content-Type (default application/json)
local file = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"
--   WRK_AUTHORIZATION an Authorization header value, if any (bench/auth.py)
local authorization = os.getenv("WRK_AUTHORIZATION")
if authorization then
  wrk.headers["Authorization"] = authorization
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK_SUMMARY requests=%d duration_us=%d status_errors=%d socket_errors=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d\n",
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
