-- wrk script for bench/service.py: POST /decrement on the baseline app (one Redis Lua DECR).
-- args[1]: a file with one JSON body per line ({"session_id": "b<i>"}, one per connection in
-- the httpx generator); args[2]: the number of wrk threads (-t). Thread j (1-based) owns lines
-- j, j + t, ... and request n of a thread sends its owned line n % #owned. done() prints one
-- JSON line for the bench, in the same format as service.lua.

local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local threads, i = tonumber(args[2]), 0
  bodies = {}
  for line in io.lines(args[1]) do
    if i % threads == id - 1 then
      bodies[#bodies + 1] = line
    end
    i = i + 1
  end
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[n % #bodies + 1]
  n = n + 1
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
