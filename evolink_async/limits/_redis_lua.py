"""The one Lua script behind :class:`~.redis_limits.RedisLimits`: every shared change is atomic.

``ARGV[1]`` is a JSON list of operations applied in order in one round trip (the releases,
settles and closes queued since the last call, then the call's own operation); ``ARGV[2]`` is
the channel told of every change that may let a waiter go (``slot``, ``credit``) and of every
pause (``pause``). A lease or a reservation granted may also book the process's next rate
slot (``book`` inside the op), saving the create its own round trip. The clock is the server's
(``TIME``), so every process reads one clock. The result is the JSON of the last operation.

Keys (one namespace): rate (hash), conc (hash), leases (zset lease -> expiry),
owners (hash lease -> owner), budget (hash), res (hash id -> amount), res_owners (hash),
queue (zset: the processes waiting for a slot, first come first served), queue_seen (zset).
"""

from __future__ import annotations

from typing import Final

__all__ = ["KEY_NAMES", "SCRIPT"]

KEY_NAMES: Final = (
    "rate",
    "conc",
    "leases",
    "owners",
    "budget",
    "res",
    "res_owners",
    "queue",
    "queue_seen",
)

SCRIPT: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local RATE, CONC, LEASES, OWNERS, BUDGET, RES, RES_OWNERS, QUEUE, QSEEN =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local freed = {}  -- what this run freed: 'slot', 'credit' (published to the waiters)
local EPS = 1e-9

local function str(x) return string.format('%.17g', x) end
local function num(v, d) local n = tonumber(v); if n == nil then return d end; return n end

local function rate_state()
  local h = redis.call('HMGET', RATE, 'tat', 'paused', 'factor', 'since', 'drop')
  return {tat = num(h[1], 0), paused = num(h[2], 0), factor = num(h[3], 1),
          since = num(h[4], 0), drop = num(h[5], -1e18)}
end

local function factor_at(s, inc, at)
  if at <= s.since then return s.factor end
  return math.min(1, s.factor + inc * (at - s.since))
end

local function save_rate(s)
  redis.call('HSET', RATE, 'tat', str(s.tat), 'paused', str(s.paused),
    'factor', str(s.factor), 'since', str(s.since), 'drop', str(s.drop))
end

local function expire_leases()
  local gone = redis.call('ZRANGEBYSCORE', LEASES, '-inf', str(now))
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', LEASES, '-inf', str(now))
    redis.call('HDEL', OWNERS, unpack(gone))
    freed.slot = true
  end
end

local function throttled(op, s)
  local cur = factor_at(s, op.inc, now)
  local new_episode = now >= s.paused
  s.paused = math.max(s.paused, now + op.pause)
  if new_episode and now - s.drop >= op.cooldown then
    cur = math.max(op.min_factor, cur * op.decrease)
    s.drop = now
  end
  s.factor = cur
  s.since = s.paused
  if op.pause > 0 then redis.call('PUBLISH', ARGV[2], 'pause') end
end

local function throttle(op)
  local s = rate_state()
  throttled(op, s)
  save_rate(s)
  return {paused = s.paused - now}
end

-- a "too many concurrent tasks" 429: shrink the shared cap once (with the rate's drop)
local function shrink(op)
  if rate_state().drop ~= now then return {ok = 0} end
  expire_leases()
  local cap = num(redis.call('HGET', CONC, 'cap'), op.configured)
  cap = math.max(1, math.min(cap, redis.call('ZCARD', LEASES) - 1))
  redis.call('HSET', CONC, 'cap', cap, 'last', str(now))
  return {ok = 1, cap = cap}
end

local function renew(op)
  for _, id in ipairs(op.ids) do redis.call('ZADD', LEASES, 'XX', str(now + op.ttl), id) end
  return {ok = 1}
end

local function book(op)
  local s = rate_state()
  local f = factor_at(s, op.inc, now)
  local start = math.max(now, s.paused)
  if op.recheck and now >= s.paused then
    save_rate(s)
    return {wait = 0, rate = op.rate * f, paused = 0}
  end
  local slot = start
  if op.rate > 0 then
    local interval = 1 / (op.rate * f)
    local tau = (op.burst - 1) * interval
    slot = math.max(start, s.tat - tau)
    s.tat = math.max(s.tat, slot) + interval
  end
  save_rate(s)
  local paused = math.max(0, s.paused - now)
  return {wait = slot - now, at = str(slot), rate = op.rate * f, paused = paused}
end

local function lease(op)
  expire_leases()
  local h = redis.call('HMGET', CONC, 'cap', 'last')
  local cap = num(h[1], op.configured)
  local last = num(h[2], now)
  if cap > op.configured then cap = op.configured end
  if cap < op.configured and op.grow_every > 0 then
    local steps = math.floor((now - last) / op.grow_every)
    if steps > 0 then
      cap = math.min(op.configured, cap + steps)
      last = last + steps * op.grow_every
    end
  end
  redis.call('HSET', CONC, 'cap', cap, 'last', str(last))
  -- first come, first served: a process waiting (in QUEUE, seen in QSEEN) goes before one
  -- that is not; a waiter not seen for a lease time is gone
  local stale = redis.call('ZRANGEBYSCORE', QSEEN, '-inf', str(now - op.ttl))
  if #stale > 0 then
    redis.call('ZREM', QUEUE, unpack(stale))
    redis.call('ZREM', QSEEN, unpack(stale))
  end
  local n = redis.call('ZCARD', LEASES)
  local free = cap - n
  local rank = redis.call('ZRANK', QUEUE, op.owner)
  local ahead = rank
  if ahead == false or ahead == nil then ahead = redis.call('ZCARD', QUEUE) end
  if ahead < free then
    redis.call('ZADD', LEASES, str(now + op.ttl), op.id)
    redis.call('HSET', OWNERS, op.id, op.owner)
    redis.call('ZREM', QUEUE, op.owner)
    redis.call('ZREM', QSEEN, op.owner)
    local r = {ok = 1, held = n + 1, cap = cap, wait = 0}
    if op.book then r.slot = book(op.book) end
    if free > 1 then freed.slot = true end  -- the next waiters may go too
    return r
  end
  redis.call('ZADD', QUEUE, 'NX', str(now), op.owner)
  redis.call('ZADD', QSEEN, str(now), op.owner)
  local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
  return {ok = 0, held = n, cap = cap, wait = math.max(0, num(first[2], now) - now)}
end

-- tell the waiters whose turn it is (one message each: the others sleep on)
local function notify_slots()
  local cap = num(redis.call('HGET', CONC, 'cap'), 0)
  local free = cap - redis.call('ZCARD', LEASES)
  if free <= 0 then return end
  for _, owner in ipairs(redis.call('ZRANGE', QUEUE, 0, free - 1)) do
    redis.call('PUBLISH', ARGV[2], 'slot:' .. owner)
  end
end

local function unqueue(op)
  redis.call('ZREM', QUEUE, op.owner)
  redis.call('ZREM', QSEEN, op.owner)
  freed.slot = true  -- the next in line may be able to go
  return {ok = 1}
end

local function unlease(op)
  if redis.call('ZREM', LEASES, op.id) > 0 then freed.slot = true end
  redis.call('HDEL', OWNERS, op.id)
  return {ok = 1}
end

local function budget_state()
  local h = redis.call('HMGET', BUDGET, 'total', 'spent', 'reserved')
  return num(h[1], nil), num(h[2], 0), num(h[3], 0)
end

local function init_budget(op)
  redis.call('HSETNX', BUDGET, 'total', str(op.total))
  local total, spent, reserved = budget_state()
  return {total = total, spent = spent, reserved = reserved}
end

local function reserve(op)
  local total, spent, reserved = budget_state()
  if total == nil then return {ok = -2} end
  local slack = EPS * math.max(1, total)
  if spent + reserved + op.amount <= total + slack then
    redis.call('HSET', BUDGET, 'reserved', str(reserved + op.amount))
    redis.call('HSET', RES, op.id, str(op.amount))
    redis.call('HSET', RES_OWNERS, op.id, op.owner)
    local r = {ok = 1, total = total, spent = spent, reserved = reserved + op.amount}
    if op.book then r.slot = book(op.book) end
    return r
  end
  local floor = spent
  if not op.release_on_failure then floor = spent + reserved end
  local ok = 0
  if floor + op.amount > total + slack then ok = -1 end
  return {ok = ok, total = total, spent = spent, reserved = reserved}
end

local function settle(op)
  local old = tonumber(redis.call('HGET', RES, op.id))
  if old == nil then return {ok = 0} end
  local total, spent, reserved = budget_state()
  redis.call('HSET', RES, op.id, str(op.amount))
  redis.call('HSET', BUDGET, 'reserved', str(math.max(0, reserved + op.amount - old)))
  if op.amount < old then freed.credit = true end
  return {ok = 1}
end

local function close(op)
  local amount = tonumber(redis.call('HGET', RES, op.id))
  if amount == nil then return {ok = 0} end
  local total, spent, reserved = budget_state()
  redis.call('HDEL', RES, op.id)
  redis.call('HDEL', RES_OWNERS, op.id)
  reserved = math.max(0, reserved - amount)
  if redis.call('HLEN', RES) == 0 then reserved = 0 end  -- no float residue
  if op.spend then spent = spent + amount end
  freed.credit = true  -- a waiter may now fit, or know that it never will
  redis.call('HSET', BUDGET, 'reserved', str(reserved), 'spent', str(spent))
  return {ok = 1}
end

local handlers = {book = book, throttle = throttle, shrink = shrink, unqueue = unqueue,
                  renew = renew, lease = lease, unlease = unlease, init_budget = init_budget,
                  reserve = reserve, settle = settle, close = close}
local result = {}
for _, op in ipairs(cjson.decode(ARGV[1])) do
  result = handlers[op.op](op)
end
if freed.slot then notify_slots() end
if freed.credit then redis.call('PUBLISH', ARGV[2], 'credit') end
return cjson.encode(result)
"""
