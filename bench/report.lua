-- wrk reporter for bench/bench.py: one JSON line at the end of a run, latencies in microseconds.
-- wrk's own `errors.status` counts only statuses >= 400; a 302 to a login page is not an error
-- to wrk, which is why bench.py also counts, at the upstream, what arrived authenticated.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
