-- Record the answer a client received while the store was unreachable (docs/service.md,
-- "Degraded answers are settled"), and make the budget agree with it.
-- KEYS[1..3] as in check_and_consume.lua (session hash, request ids, previous generation)
-- ARGV[1]  request id
-- ARGV[2]  charge: units the received answer used (cost for a fail-open intervene, else 0)
-- ARGV[3]  body digest
-- ARGV[4]  cap (records per generation)
-- ARGV[5]  granted, ARGV[6] before, ARGV[7] after, ARGV[8] wanted (as the answer states them)
-- ARGV[9]  deadline (Redis TIME, ms) the degraded request's script had
-- ARGV[10] answer text
-- A record written by a script that started before ARGV[9] is the request's own late answer,
-- which the client never received: its charge is replaced by this one (the difference is
-- refunded or charged, never below 0) and the record becomes the received answer, so a retry
-- replays it. A record written after the deadline is a later, received answer (a retry that
-- reached the store): it stays. Settling twice changes nothing.
-- Returns {status, remaining}: 0 settled, 1 already settled or superseded, -1 no such session.
local ttl = redis.call('HGET', KEYS[1], 'ttl_ms')
if not ttl then
  return {-1, 0}
end
local rid = ARGV[1]
local where = KEYS[2]
local prev = redis.call('HGET', KEYS[2], rid)
if not prev then
  prev = redis.call('HGET', KEYS[3], rid)
  if prev then
    where = KEYS[3]
  end
end
local remaining = tonumber(redis.call('HGET', KEYS[1], 'remaining'))
local charged_before = 0
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if prev then
  local c, at_prev, ans = string.match(prev, '^(%d+) %d %d+ %d+ %d (%d+) %S+ (.*)$')
  if ans == ARGV[10] or tonumber(at_prev) > tonumber(ARGV[9]) then
    return {1, remaining}
  end
  charged_before = tonumber(c)
  at = tonumber(at_prev)
end
local after = remaining + charged_before - tonumber(ARGV[2])
if after < 0 then
  after = 0
end
if after ~= remaining then
  redis.call('HSET', KEYS[1], 'remaining', after)
end
if not prev and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then
  redis.call('RENAME', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'rotated', 1)
end
redis.call('HSET', where, rid, table.concat({charged_before + remaining - after, ARGV[5], ARGV[6],
  ARGV[7], ARGV[8], at, ARGV[3], ARGV[10]}, ' '))
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return {0, after}
