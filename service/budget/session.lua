-- Session lifecycle in one script (so a Redis Cluster client needs no MULTI/WATCH).
-- KEYS[1..3] as in check_and_consume.lua (session hash, request ids, previous generation)
-- ARGV[1] = 'create': ARGV[2] budget, ARGV[3] ttl_ms, ARGV[4] horizon (-1 none),
--           ARGV[5] created_at, ARGV[6] metadata JSON   -> {1}
--           typed sessions add ARGV[7] type names 'a,b' and ARGV[8] budgets per type '3,1'
--           (fields types, budgets, remainings; budget and remaining then hold the sums)
-- ARGV[1] = 'close':  ARGV[2] success (0/1), ARGV[3] steps  -> {status, fields...}
--           status 1 closed now, -1 no such session, -3 already closed
-- ARGV[1] = 'describe'                                  -> {pttl, fields...} or {-1}
local op = ARGV[1]
if op == 'create' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'budget', ARGV[2], 'remaining', ARGV[2], 'horizon', ARGV[4],
    'ttl_ms', ARGV[3], 'created_at', ARGV[5], 'closed', 0, 'metadata', ARGV[6])
  if ARGV[7] then
    redis.call('HSET', KEYS[1], 'types', ARGV[7], 'budgets', ARGV[8], 'remainings', ARGV[8])
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1}
end
local ttl = redis.call('HGET', KEYS[1], 'ttl_ms')
if not ttl then
  return {-1}
end
if op == 'describe' then
  local out = redis.call('HGETALL', KEYS[1])
  table.insert(out, 1, redis.call('PTTL', KEYS[1]))
  return out
end
if redis.call('HGET', KEYS[1], 'closed') == '1' then
  return {-3}
end
redis.call('HSET', KEYS[1], 'closed', 1, 'success', ARGV[2], 'steps', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 1)
return out
