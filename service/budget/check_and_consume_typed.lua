-- Atomic check-and-consume for a typed session: one budget per intervention type (issue 14).
-- KEYS[1..3] as in check_and_consume.lua (session hash, request ids, previous generation);
--          the hash holds 'types' ('a,b'), 'remainings' ('3,1') and 'remaining' (their sum)
-- ARGV[1]  request id ('' = no record)
-- ARGV[2]  type names 'a,b' (must equal the session's 'types', else status -6)
-- ARGV[3]  cost per type '1,2'
-- ARGV[4]  box offset per type '0,0';  ARGV[5] box size per type '4,2'
-- ARGV[6]  plan: one digit per cell of the box, row-major (the last type varies fastest):
--          0 = proceed, i = request type i
-- ARGV[7]  deadline, Redis TIME in ms (0 = none): a script that starts later writes nothing
-- ARGV[8]  body digest (no spaces); ARGV[9] cap (records per generation)
-- ARGV[10] answer tail, ARGV[11] answer heads per cell joined by newlines (as in
--          check_and_consume.lua: the recorded answer at cell i is head(i) .. tail)
-- Record: 'T action before after wanted at_ms digest answer' (before/after: 'c1,c2')
-- Returns {status, action, before, after, wanted, now_ms, answer}; action = the type charged
-- (0 none), wanted = the plan's action at before. status 0 answered, 1 replay, -1 no such
-- session, -2 the box misses remaining (before = remaining), -3 closed, -4 past the deadline,
-- -5 request id reused with another digest, -6 the session's types differ. Only status 0
-- writes; exactly the chosen type is charged and no budget goes negative.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local nows = string.format('%.3f', now)
local deadline = tonumber(ARGV[7])
if deadline > 0 and now > deadline then
  return {-4, 0, '', '', 0, nows, ''}
end
local s = redis.call('HMGET', KEYS[1], 'ttl_ms', 'closed', 'remainings', 'rotated', 'types')
local ttl = s[1]
if not ttl then
  return {-1, 0, '', '', 0, nows, ''}
end
if s[5] ~= ARGV[2] then
  return {-6, 0, '', '', 0, nows, s[5] or ''}
end
local rid = ARGV[1]
if rid ~= '' then
  local prev = redis.call('HGET', KEYS[2], rid)
  if not prev and s[4] then
    prev = redis.call('HGET', KEYS[3], rid)
  end
  if prev then
    local g, b, a, w, d, ans = string.match(prev, '^T (%d) (%S+) (%S+) (%d) %d+ (%S+) (.*)$')
    if d ~= ARGV[8] then
      return {-5, 0, '', '', 0, nows, ''}
    end
    return {1, tonumber(g), b, a, tonumber(w), nows, ans}
  end
end
if s[2] == '1' then
  return {-3, 0, '', '', 0, nows, ''}
end
local function ints(text)
  local out = {}
  for v in string.gmatch(text, '[^,]+') do
    out[#out + 1] = tonumber(v)
  end
  return out
end
local before = ints(s[3])
local costs, lo, dims = ints(ARGV[3]), ints(ARGV[4]), ints(ARGV[5])
local cell = 0
for i = 1, #before do
  local off = before[i] - lo[i]
  if off < 0 or off >= dims[i] then
    return {-2, 0, s[3], s[3], 0, nows, ''}
  end
  cell = cell * dims[i] + off
end
local want = tonumber(string.sub(ARGV[6], cell + 1, cell + 1))
local action = 0
local after = s[3]
if want > 0 and before[want] >= costs[want] then
  action = want
  local left = {}
  local total = 0
  for i = 1, #before do
    left[i] = before[i]
    if i == want then
      left[i] = before[i] - costs[i]
    end
    total = total + left[i]
  end
  after = table.concat(left, ',')
  redis.call('HSET', KEYS[1], 'remainings', after, 'remaining', total)
end
if rid ~= '' then
  local answer = ''
  local n = cell
  for head in string.gmatch(ARGV[11], '[^\n]+') do
    if n == 0 then
      answer = head .. ARGV[10]
      break
    end
    n = n - 1
  end
  local rotated = s[4]
  if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[9]) then
    redis.call('RENAME', KEYS[2], KEYS[3])
    if not rotated then
      redis.call('HSET', KEYS[1], 'rotated', 1)
      rotated = '1'
    end
  end
  redis.call('HSET', KEYS[2], rid, table.concat(
    {'T', action, s[3], after, want, math.floor(now), ARGV[8], answer}, ' '))
  redis.call('PEXPIRE', KEYS[2], ttl)
  if rotated then
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {0, action, s[3], after, want, nows, ''}
