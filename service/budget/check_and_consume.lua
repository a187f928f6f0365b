-- Atomic check-and-consume of one session's intervention budget (docs/service.md, "Budget store").
-- KEYS[1]  <prefix>{tenant:session}          hash: budget, remaining, ttl_ms, closed, rotated, ...
-- KEYS[2]  <prefix>{tenant:session}:req      hash: request id -> record (current generation)
-- KEYS[3]  <prefix>{tenant:session}:req:old  the previous generation (read only here)
--          (all keys share the hash tag, so the script is Redis Cluster safe)
-- ARGV[1]  request id ('' = no record)
-- ARGV[2]  cost (integer >= 0)
-- ARGV[3]  plan offset lo (integer >= 0)
-- ARGV[4]  plan: '' = always want to charge; else char i (1-based) = '1' to intervene when the
--          remaining budget is lo + i - 1
-- ARGV[5]  deadline, Redis TIME in ms (0 = none): a script that starts later writes nothing
-- ARGV[6]  body digest (no spaces) recorded with the request id
-- ARGV[7]  cap: records per generation; a full generation becomes the old one
-- ARGV[8]  answer tail, ARGV[9] answer heads for remaining lo, lo + 1, ... joined by newlines:
--          the recorded answer at remaining c is head(c) .. tail (replayed as is)
-- Record: 'charged granted before after wanted at_ms digest answer' (at_ms: Redis TIME, ms)
-- Returns {status, granted, before, after, wanted, now_ms, answer}
--   status 0 = answered, 1 = replay of the record (fields are the record's), -1 = no such
--   session, -2 = plan misses remaining (before = remaining), -3 = session closed, -4 = past the
--   deadline, -5 = the request id was recorded with another digest. Only status 0 writes; the
--   budget never goes negative.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local nows = string.format('%.3f', now)
local deadline = tonumber(ARGV[5])
if deadline > 0 and now > deadline then
  return {-4, 0, 0, 0, 0, nows, ''}
end
local s = redis.call('HMGET', KEYS[1], 'ttl_ms', 'closed', 'remaining', 'rotated', 'types')
local ttl = s[1]
if not ttl then
  return {-1, 0, 0, 0, 0, nows, ''}
end
if s[5] then  -- a typed session (check_and_consume_typed.lua charges it)
  return {-6, 0, 0, 0, 0, nows, s[5]}
end
local rid = ARGV[1]
if rid ~= '' then
  local prev = redis.call('HGET', KEYS[2], rid)
  if not prev and s[4] then
    prev = redis.call('HGET', KEYS[3], rid)
  end
  if prev then
    local g, b, a, w, d, ans = string.match(prev, '^%d+ (%d) (%d+) (%d+) (%d) %d+ (%S+) (.*)$')
    if not g then  -- a record of the earlier format 'granted before after wanted': no answer
      g, b, a, w = string.match(prev, '^(%d+) (%d+) (%d+) (%d+)$')
      d, ans = ARGV[6], ''
    end
    if d ~= ARGV[6] then
      return {-5, 0, 0, 0, 0, nows, ''}
    end
    return {1, tonumber(g), tonumber(b), tonumber(a), tonumber(w), nows, ans}
  end
end
if s[2] == '1' then
  return {-3, 0, 0, 0, 0, nows, ''}
end
local cost = tonumber(ARGV[2])
local lo = tonumber(ARGV[3])
local before = tonumber(s[3])
local want = 1
local plan = ARGV[4]
if plan ~= '' then
  local i = before - lo + 1
  if i < 1 or i > string.len(plan) then
    return {-2, 0, before, before, 0, nows, ''}
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
  local answer = ''
  local n = before - lo
  for head in string.gmatch(ARGV[9], '[^\n]+') do
    if n == 0 then
      answer = head .. ARGV[8]
      break
    end
    n = n - 1
  end
  local rotated = s[4]
  if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[7]) then
    redis.call('RENAME', KEYS[2], KEYS[3])
    if not rotated then
      redis.call('HSET', KEYS[1], 'rotated', 1)
      rotated = '1'
    end
  end
  redis.call('HSET', KEYS[2], rid, table.concat(
    {before - after, granted, before, after, want, math.floor(now), ARGV[6], answer}, ' '))
  redis.call('PEXPIRE', KEYS[2], ttl)
  if rotated then
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {0, granted, before, after, want, nows, ''}
