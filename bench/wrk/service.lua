-- wrk script for bench/service.py: POST /v1/should_intervene, one session decision per request.
-- args[1]: a file with one JSON body prefix per session, ending in `"step":`
--          (written by bench/service.py: session_id + the session's 16 features);
-- args[2]: the number of wrk threads (-t); thread j (1-based) owns sessions j, j + t, j + 2t, ...
-- args[3]: optional run tag: with it every request carries a distinct request_id
--          "<tag><thread>-<n>" (the service then keeps an idempotency record per request).
-- Request n of a thread goes to its session n % #owned with step (n / #owned) % 90, so each
-- session walks steps 0..89 as in the httpx generator; with -t = -c every connection keeps one
-- session, exactly like the httpx generator. done() prints one JSON line for the bench.

local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local threads, i = tonumber(args[2]), 0
  prefixes = {}
  for line in io.lines(args[1]) do
    if i % threads == id - 1 then
      prefixes[#prefixes + 1] = line
    end
    i = i + 1
  end
  tag = args[3] or ""
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local k = #prefixes
  local body = prefixes[n % k + 1] .. (math.floor(n / k) % 90)
  if tag ~= "" then
    body = body .. ',"request_id":"' .. tag .. id .. '-' .. n .. '"'
  end
  n = n + 1
  return wrk.format(nil, nil, nil, body .. "}")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
