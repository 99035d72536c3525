"""The two Lua scripts of the Redis backend: admit (check and charge all, or nothing) and settle.

Both take their clock from `redis.call('TIME')`, so replicas with skewed clocks still agree, and
the UTC day of the budget is that clock's day too. Every key of a tenant shares the hash tag
`{tenant}`, so one script touches one slot of a Redis Cluster. Numbers cross back to Python as
strings: Redis truncates Lua numbers to integers on the way out.

Layout of a tenant's keys (prefix `sidegate:{tenant}:`):
    blocked            string, present while the tenant is blocked
    spend              hash: field <day> -> USD spent that UTC day, tok:<day> -> tokens charged
    b:<bucket key>     hash: l -> level, t -> ms of that level
    c:<slot key>       sorted set of request ids scored by lease expiry (ms)
"""

from __future__ import annotations

from typing import Final

# KEYS: blocked, spend, bucket..., slot...
# ARGV: n_buckets, n_slots, budget (-1: none), request_id, lease_ms, reserved_tokens,
#       then capacity, rate_per_ms, cost per bucket, then limit per slot.
# Returns {status, index, spent, retry_ms} on refusal, {"ok", 0, spent, 0, level, reset...}.
ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(now / 86400000)
local nb, ns = tonumber(ARGV[1]), tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local spent = tonumber(redis.call('HGET', KEYS[2], tostring(day)) or '0')
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'blocked', 0, tostring(spent), 0}
end
if budget >= 0 and spent >= budget then
  return {'budget', 0, tostring(spent), 86400000 - now % 86400000}
end
local levels = {}
for i = 1, nb do
  local a = 6 + (i - 1) * 3
  local cap, rate, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local s = redis.call('HMGET', KEYS[2 + i], 'l', 't')
  local level = cap
  if s[1] then
    level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate)
  end
  if level < cost then
    return {'deny', i, tostring(spent), math.ceil((cost - level) / rate)}
  end
  levels[i] = level - cost
end
local base = 6 + nb * 3
for j = 1, ns do
  local key = KEYS[2 + nb + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[base + j]) then
    return {'deny', nb + j, tostring(spent), 1000}
  end
end
local out = {'ok', 0, tostring(spent), 0}
for i = 1, nb do
  local a = 6 + (i - 1) * 3
  local cap, rate = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local reset = math.ceil((cap - levels[i]) / rate)
  redis.call('HSET', KEYS[2 + i], 'l', tostring(levels[i]), 't', now)
  redis.call('PEXPIRE', KEYS[2 + i], reset + 1000)
  out[#out + 1] = tostring(levels[i])
  out[#out + 1] = reset
end
local lease = tonumber(ARGV[5])
for j = 1, ns do
  local key = KEYS[2 + nb + j]
  redis.call('ZADD', key, now + lease, ARGV[4])
  redis.call('PEXPIRE', key, lease)
end
if tonumber(ARGV[6]) ~= 0 then
  redis.call('HINCRBY', KEYS[2], 'tok:' .. day, ARGV[6])
  redis.call('PEXPIRE', KEYS[2], 3 * 86400000)
end
return out
"""

# KEYS: spend, bucket..., slot...
# ARGV: n_buckets, n_slots, request_id, cost_usd, token_delta,
#       then capacity, rate_per_ms, delta per bucket.
# Returns today's spend after this request, as a string.
SETTLE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(now / 86400000)
local nb, ns = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, nb do
  local a = 5 + (i - 1) * 3
  local cap, rate, delta = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if delta ~= 0 then
    local s = redis.call('HMGET', KEYS[1 + i], 'l', 't')
    local level = cap
    if s[1] then
      level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate)
    end
    level = math.min(cap, level - delta)
    redis.call('HSET', KEYS[1 + i], 'l', tostring(level), 't', now)
    redis.call('PEXPIRE', KEYS[1 + i], math.ceil((cap - level) / rate) + 1000)
  end
end
for j = 1, ns do
  redis.call('ZREM', KEYS[1 + nb + j], ARGV[3])
end
local spent
if tonumber(ARGV[4]) > 0 then
  spent = redis.call('HINCRBYFLOAT', KEYS[1], tostring(day), ARGV[4])
  redis.call('HDEL', KEYS[1], tostring(day - 2), 'tok:' .. (day - 2))
else
  spent = redis.call('HGET', KEYS[1], tostring(day)) or '0'
end
if tonumber(ARGV[5]) ~= 0 then
  redis.call('HINCRBY', KEYS[1], 'tok:' .. day, ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], 3 * 86400000)
return spent
"""

# KEYS: blocked, spend. Returns {blocked, spent today, tokens today}.
STATE: Final = """
local t = redis.call('TIME')
local day = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / 86400000)
local spent = redis.call('HGET', KEYS[2], tostring(day)) or '0'
local tokens = redis.call('HGET', KEYS[2], 'tok:' .. day) or '0'
return {redis.call('EXISTS', KEYS[1]), spent, tokens}
"""
