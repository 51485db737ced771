-- wrk reporting script for `cargo xtask bench`: prints one JSON line with the totals and the
-- latency distribution (microseconds at fixed percentiles), which the driver parses.
done = function(summary, latency, requests)
  local ps = {1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9}
  local parts = {}
  for _, p in ipairs(ps) do
    table.insert(parts, string.format('"%s":%d', tostring(p), latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,"mean_us":%.1f,"percentiles_us":{%s}}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency.mean, table.concat(parts, ",")))
end
