-- Atomic check-and-consume of one session's intervention budget (DESIGN.md §7).
-- KEYS[1]  <prefix>{tenant:session}      hash: budget, remaining, ttl_ms, closed, ...
-- KEYS[2]  <prefix>{tenant:session}:req  hash: request id -> "granted before after wanted"
--          (both keys share the hash tag, so the script is Redis Cluster safe)
-- ARGV[1]  request id ('' = no idempotency record)
-- ARGV[2]  cost (integer >= 0)
-- ARGV[3]  plan offset lo (integer >= 0)
-- ARGV[4]  plan: '' = always want to charge; else char i (1-based) = '1' to intervene when the
--          remaining budget is lo + i - 1
-- Returns {status, granted, before, after, wanted, replayed}
--   status 0 = answered, -1 = no such session, -2 = plan misses remaining (before = remaining),
--   -3 = session closed. Only status 0 with granted = 1 writes the budget; the budget never
--   goes negative; a replay returns the recorded answer and writes nothing.
local ttl = redis.call('HGET', KEYS[1], 'ttl_ms')
if not ttl then
  return {-1, 0, 0, 0, 0, 0}
end
local rid = ARGV[1]
if rid ~= '' then
  local prev = redis.call('HGET', KEYS[2], rid)
  if prev then
    local g, b, a, w = string.match(prev, '^(%d+) (%d+) (%d+) (%d+)$')
    return {0, tonumber(g), tonumber(b), tonumber(a), tonumber(w), 1}
  end
end
if redis.call('HGET', KEYS[1], 'closed') == '1' then
  return {-3, 0, 0, 0, 0, 0}
end
local cost = tonumber(ARGV[2])
local before = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
local want = 1
local plan = ARGV[4]
if plan ~= '' then
  local i = before - tonumber(ARGV[3]) + 1
  if i < 1 or i > string.len(plan) then
    return {-2, 0, before, before, 0, 0}
  end
  if string.sub(plan, i, i) ~= '1' then
    want = 0
  end
end
local granted = 0
local after = before
if want == 1 and before >= cost then
  granted = 1
  after = before - cost
  if cost > 0 then
    redis.call('HSET', KEYS[1], 'remaining', after)
  end
end
if rid ~= '' then
  redis.call('HSET', KEYS[2], rid, granted .. ' ' .. before .. ' ' .. after .. ' ' .. want)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {0, granted, before, after, want, 0}
