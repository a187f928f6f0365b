-- Record a typed answer the client received while the store was unreachable (a typed answer
-- then fails closed: it charged nothing), as settle.lua does for one type.
-- KEYS[1..3] as in check_and_consume_typed.lua
-- ARGV[1] request id, ARGV[2] body digest, ARGV[3] cap (records per generation),
-- ARGV[4] remaining per type the answer states ('3,1'), ARGV[5] deadline (Redis TIME, ms) the
-- degraded request's own script had, ARGV[6] answer text
-- A record written before ARGV[5] is the request's own late answer, which the client never
-- received: its charge is refunded to its type and the record becomes the received answer, so
-- a retry replays it. A record written after the deadline is a later retry's: it stays.
-- Settling twice changes nothing. Returns {status}: 0 settled, 1 already settled or
-- superseded, -1 no such session.
local s = redis.call('HMGET', KEYS[1], 'ttl_ms', 'remainings')
if not s[1] then
  return {-1}
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
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if prev then
  local b, a, at_prev, ans = string.match(prev, '^T %d (%S+) (%S+) %d (%d+) %S+ (.*)$')
  if ans == ARGV[6] or tonumber(at_prev) > tonumber(ARGV[5]) then
    return {1}
  end
  local function ints(text)
    local out = {}
    for v in string.gmatch(text, '[^,]+') do
      out[#out + 1] = tonumber(v)
    end
    return out
  end
  local cur, bv, av = ints(s[2]), ints(b), ints(a)
  local total = 0
  for i = 1, #cur do
    cur[i] = cur[i] + bv[i] - av[i]
    total = total + cur[i]
  end
  redis.call('HSET', KEYS[1], 'remainings', table.concat(cur, ','), 'remaining', total)
  at = tonumber(at_prev)
end
if not prev and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  redis.call('RENAME', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'rotated', 1)
end
redis.call('HSET', where, rid, table.concat({'T', 0, ARGV[4], ARGV[4], 0, at, ARGV[2], ARGV[6]}, ' '))
redis.call('PEXPIRE', KEYS[2], s[1])
redis.call('PEXPIRE', KEYS[3], s[1])
return {0}
