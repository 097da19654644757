"""The one Lua script behind :class:`~.redis_limits.RedisLimits`: every shared change is atomic.

``ARGV[1]`` is a JSON list of operations applied in order in one round trip (the releases,
settles and closes queued since the last call, then the call's own operation); ``ARGV[2]`` is
the channel told of every grant to a waiter in line (``go:<id>:<wait>``, ``ask:<id>``) and of
every pause (``pause``). A lease or a reservation granted may also book the process's next
rate slot (``book`` inside the op), saving the create its own round trip. The clock is the
server's (``TIME``), so every process reads one clock. The result is the JSON of the last
operation.

The rate: with a ``window`` (seconds, the service's counting window), at most
``n = max(burst, rate * window)`` requests in any window, as the service counts them (a burst
after a quiet spell goes at once; the n-th after a slot is booked ``n / rate + guard`` after
it: requests leave a little after their slots, and a late burst must not meet the next one
in one window of the service; while waiters stand in line, a slot booked on its own leaves
``keep`` of each window's n to the creates' slots, booked with their grants); without one,
a GCRA (``burst`` at once, then one every ``1 / rate`` s). Either slows with the shared AIMD
factor and waits out a pause.

Keys (one namespace): rate (hash), conc (hash), leases (zset lease -> expiry),
owners (hash lease -> owner), budget (hash), res (hash id -> amount), res_owners (hash),
queue and cqueue (zsets: the tickets waiting for a slot or for credits, by arrival),
queue_seen (zset ticket -> a lease time after it was last seen), tickets (hash ticket -> its
op), sent (list: the last slots booked, window mode), pending (zset: reservations granted
from the line, not yet taken -> when they go back).
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
    "cqueue",
    "tickets",
    "sent",
    "pending",
)

SCRIPT: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local RATE, CONC, LEASES, OWNERS, BUDGET, RES, RES_OWNERS, QUEUE, QSEEN, CQUEUE, TICKETS, SENT,
  PENDING = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9],
  KEYS[10], KEYS[11], KEYS[12], KEYS[13]
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

-- also a dead process's leases expire here: a renewal (every third of a lease time, in every
-- process that holds or waits) serves their slots to the line, no waiter need wake for it
local function renew(op)
  expire_leases()
  for _, id in ipairs(op.ids) do redis.call('ZADD', LEASES, 'XX', str(now + op.ttl), id) end
  for _, id in ipairs(op.tickets or {}) do
    redis.call('ZADD', QSEEN, 'XX', str(now + op.ttl), id)
  end
  return {ok = 1}
end

-- ``granted``: booked along a lease or credits granted (a create's slot). While waiters
-- stand in line (creates to come), the others (reads) leave up to ``op.keep`` slots of each
-- window to those: a create then waits less for the reads booked before it
local function book(op, granted)
  local s = rate_state()
  local f = factor_at(s, op.inc, now)
  local start = math.max(now, s.paused)
  if op.recheck and now >= s.paused then
    save_rate(s)
    return {wait = 0, rate = op.rate * f, paused = 0}
  end
  local slot = start
  local window = tonumber(op.window) or 0
  if op.rate > 0 and window > 0 then
    -- as the service counts: at most n requests in any window (stretched while the factor
    -- is below 1), booked first come, first served (tat: the last slot booked)
    local n = math.max(1, op.burst, math.floor(op.rate * window + EPS))
    local limit = n
    if not granted and (tonumber(op.keep) or 0) > 0 then
      local waiting = redis.call('ZCARD', QUEUE) + redis.call('ZCARD', CQUEUE)
      limit = math.max(1, n - math.min(op.keep, waiting))
    end
    slot = math.max(start, s.tat)
    if redis.call('LLEN', SENT) >= limit then
      local span = n / (op.rate * f) + (tonumber(op.guard) or 0)
      slot = math.max(slot, tonumber(redis.call('LINDEX', SENT, -limit)) + span)
    end
    redis.call('RPUSH', SENT, str(slot))
    redis.call('LTRIM', SENT, -n, -1)
    s.tat = slot
  elseif op.rate > 0 then
    local interval = 1 / (op.rate * f)
    local tau = (op.burst - 1) * interval
    slot = math.max(start, s.tat - tau)
    s.tat = math.max(s.tat, slot) + interval
  end
  save_rate(s)
  local paused = math.max(0, s.paused - now)
  return {wait = slot - now, at = str(slot), rate = op.rate * f, paused = paused}
end

-- a waiter's ticket (a lease or a reservation not granted yet): in line in QUEUE (slots) or
-- CQUEUE (credits) by arrival, in QSEEN until a lease time after it was last seen (its
-- own), its op in TICKETS. The line is served in
-- order by the script run that frees something (serve_slots, serve_credits): the waiter is
-- told 'go:<id>:<wait of the rate slot booked for it>' and needs no call of its own.
local function drop_stale()
  local stale = redis.call('ZRANGEBYSCORE', QSEEN, '-inf', str(now))
  if #stale > 0 then
    redis.call('ZREM', QUEUE, unpack(stale))
    redis.call('ZREM', CQUEUE, unpack(stale))
    redis.call('ZREM', QSEEN, unpack(stale))
    redis.call('HDEL', TICKETS, unpack(stale))
  end
end

local function wait_in_line(queue, op)
  redis.call('ZADD', queue, 'NX', str(now), op.id)
  redis.call('ZADD', QSEEN, str(now + op.ttl), op.id)
  redis.call('HSET', TICKETS, op.id, cjson.encode(op))
end

local function leave_line(id)
  redis.call('ZREM', QUEUE, id)
  redis.call('ZREM', CQUEUE, id)
  redis.call('ZREM', QSEEN, id)
  redis.call('HDEL', TICKETS, id)
end

-- the place of ticket ``id`` in ``queue`` (0: first), or the length of the line if not in it
local function place(queue, id)
  local rank = redis.call('ZRANK', queue, id)
  if rank == false or rank == nil then return redis.call('ZCARD', queue) end
  return rank
end

local function grown_cap(op)
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
  return cap
end

-- a waiter served from the line gets what it would hold had it been granted when last seen
-- alive (a dead waiter's grant comes back within a lease time of its death)
local function alive_until(op)
  return math.min(now + op.ttl, num(redis.call('ZSCORE', QSEEN, op.id), now + op.ttl))
end

local function grant_lease(op, served)
  local expiry = now + op.ttl
  if served then expiry = alive_until(op) end
  redis.call('ZADD', LEASES, str(expiry), op.id)
  redis.call('HSET', OWNERS, op.id, op.owner)
  leave_line(op.id)
  if op.book then return book(op.book, true) end
  return nil
end

local function lease(op)
  expire_leases()
  drop_stale()
  local cap = grown_cap(op)
  local n = redis.call('ZCARD', LEASES)
  if redis.call('ZSCORE', LEASES, op.id) then  -- granted while this waiter slept
    leave_line(op.id)
    local r = {ok = 1, held = n, cap = cap, wait = 0}
    if op.book then r.slot = book(op.book, true) end
    return r
  end
  -- first come, first served: a newcomer goes behind every waiter still in line
  if place(QUEUE, op.id) < cap - n then
    local r = {ok = 1, held = n + 1, cap = cap, wait = 0}
    r.slot = grant_lease(op, false)
    freed.slot = true  -- the waiters behind may fit too
    return r
  end
  wait_in_line(QUEUE, op)
  local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
  return {ok = 0, held = n, cap = cap, wait = math.max(0, num(first[2], now) - now)}
end

local function go(id, slot)
  local wait = ''
  if slot then wait = str(slot.wait) end
  redis.call('PUBLISH', ARGV[2], 'go:' .. id .. ':' .. wait)
end

-- hand the free slots to the waiters in line, in order (one message each)
local function serve_slots()
  local cap = num(redis.call('HGET', CONC, 'cap'), 0)
  local free = cap - redis.call('ZCARD', LEASES)
  while free > 0 do
    local head = redis.call('ZRANGE', QUEUE, 0, 0)
    if #head == 0 then return end
    local ticket = redis.call('HGET', TICKETS, head[1])
    if ticket then
      local op = cjson.decode(ticket)
      go(op.id, grant_lease(op, true))
      free = free - 1
    else
      leave_line(head[1])
    end
  end
end

-- credits granted to a waiter that never took them go back (not spent)
local function give_back(id)
  local amount = num(redis.call('HGET', RES, id), 0)
  redis.call('HDEL', RES, id)
  redis.call('HDEL', RES_OWNERS, id)
  redis.call('ZREM', PENDING, id)
  local reserved = num(redis.call('HGET', BUDGET, 'reserved'), 0)
  if redis.call('HLEN', RES) == 0 then reserved = amount end  -- no float residue
  redis.call('HSET', BUDGET, 'reserved', str(math.max(0, reserved - amount)))
  freed.credit = true
end

local function expire_pending()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', PENDING, '-inf', str(now))) do
    give_back(id)
  end
end

-- the waiter took what the line granted it (a lease: renewed from now)
local function taken(op)
  redis.call('ZREM', PENDING, op.id)
  redis.call('ZADD', LEASES, 'XX', str(now + op.ttl), op.id)
  return {ok = 1}
end

-- a waiter gave up (cancelled, or Redis failed it): out of line, and what it was granted
-- meanwhile but never took goes back
local function unqueue(op)
  leave_line(op.id)
  if redis.call('ZREM', LEASES, op.id) > 0 then redis.call('HDEL', OWNERS, op.id) end
  if redis.call('HEXISTS', RES, op.id) == 1 then give_back(op.id) end
  freed.slot = true  -- the next in line may be able to go
  freed.credit = true
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

local function fits(op, total, spent, reserved)
  return spent + reserved + op.amount <= total + EPS * math.max(1, total)
end

local function never_fits(op, total, spent, reserved)
  local floor = spent
  if not op.release_on_failure then floor = spent + reserved end
  return floor + op.amount > total + EPS * math.max(1, total)
end

-- a reservation served from the line is pending until its waiter takes it (says so with its
-- next call): one whose waiter died first goes back a lease time after it was last seen
local function grant_credits(op, reserved, served)
  if served then redis.call('ZADD', PENDING, str(alive_until(op)), op.id) end
  redis.call('HSET', BUDGET, 'reserved', str(reserved + op.amount))
  redis.call('HSET', RES, op.id, str(op.amount))
  redis.call('HSET', RES_OWNERS, op.id, op.owner)
  leave_line(op.id)
  if op.book then return book(op.book, true) end
  return nil
end

local function reserve(op)
  local total, spent, reserved = budget_state()
  if total == nil then return {ok = -2} end
  drop_stale()
  local r = {ok = 1, total = total, spent = spent, reserved = reserved, amount = op.amount}
  if redis.call('HEXISTS', RES, op.id) == 1 then  -- granted while this waiter slept
    leave_line(op.id)
    redis.call('ZREM', PENDING, op.id)
    if op.book then r.slot = book(op.book, true) end
    return r
  end
  if never_fits(op, total, spent, reserved) then
    leave_line(op.id)
    freed.credit = true  -- it may have been first in line
    r.ok = -1
    return r
  end
  -- first come, first served: only the first in line (or a newcomer to no line) may reserve
  if place(CQUEUE, op.id) == 0 and fits(op, total, spent, reserved) then
    r.slot = grant_credits(op, reserved, false)
    r.reserved = reserved + op.amount
    return r
  end
  wait_in_line(CQUEUE, op)
  r.ok = 0
  return r
end

-- hand the credits freed to the waiters in line, in order: the first that does not fit yet
-- stops the line; one that never will is told to ask again (and hears why)
local function serve_credits()
  local total, spent, reserved = budget_state()
  if total == nil then return end
  while true do
    local head = redis.call('ZRANGE', CQUEUE, 0, 0)
    if #head == 0 then return end
    local ticket = redis.call('HGET', TICKETS, head[1])
    if not ticket then
      leave_line(head[1])
    else
      local op = cjson.decode(ticket)
      if never_fits(op, total, spent, reserved) then
        leave_line(op.id)
        redis.call('PUBLISH', ARGV[2], 'ask:' .. op.id)
      elseif fits(op, total, spent, reserved) then
        go(op.id, grant_credits(op, reserved, true))
        reserved = reserved + op.amount
      else
        return
      end
    end
  end
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
  redis.call('ZREM', PENDING, op.id)
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
                  taken = taken,
                  reserve = reserve, settle = settle, close = close}
local result = {}
expire_pending()
for _, op in ipairs(cjson.decode(ARGV[1])) do
  result = handlers[op.op](op)
end
if freed.slot then serve_slots() end
if freed.credit then serve_credits() end
return cjson.encode(result)
"""
