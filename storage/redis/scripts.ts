/**
 * The Lua scripts of the Redis backend: each runs atomically in Redis (no
 * other command runs in between), which is what makes a seq, a queue id or a
 * guarded rewrite atomic across every node sharing the server.
 *
 * Numbers reach Redis as strings formatted with `%.0f`: Lua's default number
 * formatting (`%.14g`) would round an archive position (about 1.7e15).
 */

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/** A Lua script run by its SHA1, loaded once per connection. */
export class Script {
  readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  /**
   * Runs the script. Scripts are loaded when the connection is (re)made
   * (RedisStorage), so EVALSHA finds them; a server that lost them (SCRIPT
   * FLUSH) gets the body once through EVAL.
   */
  async run(
    client: Redis,
    keys: (string | Buffer)[],
    args: (string | number | Buffer)[],
  ): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      return client.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

/**
 * Lua: fields and their values in a hash, flat [field, value…], read in
 * chunks of 500 (unpack's limit); a field without a value is left out.
 */
const WITH_VALUES = `
local function with_values(fields, hash)
  local out = {}
  for i = 1, #fields, 500 do
    local chunk = {}
    for j = i, math.min(i + 499, #fields) do chunk[#chunk + 1] = fields[j] end
    local vs = redis.call('HMGET', hash, unpack(chunk))
    for j = 1, #chunk do
      if vs[j] then
        out[#out + 1] = chunk[j]
        out[#out + 1] = vs[j]
      end
    end
  end
  return out
end`;

/**
 * kv entries: keys of a prefix (KEYS[1] the lex index, ARGV its range) and
 * their values (KEYS[2] the hash), read at one instant. Flat [k, v, k, v…].
 */
export const KV_ENTRIES = new Script(`
${WITH_VALUES}
return with_values(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2]), KEYS[2])
`);

/**
 * Queue push. KEYS: meta hash (last id, bytes), id list, items hash.
 * ARGV: the JSON, its length in UTF-16 units (the contract's "characters").
 * Items are stored as "<length>|<json>" so a removal knows what it frees.
 */
export const QUEUE_PUSH = new Script(`
local id = redis.call('HINCRBY', KEYS[1], 'last', 1)
local sid = string.format('%016.0f', id)
redis.call('RPUSH', KEYS[2], sid)
redis.call('HSET', KEYS[3], sid, ARGV[2] .. '|' .. ARGV[1])
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[2])
return sid
`);

/** Queue list: the first ARGV[1] ids (-1: all) and their items, flat [id, item…]. KEYS: id list, items hash. */
export const QUEUE_LIST = new Script(`
${WITH_VALUES}
return with_values(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1])), KEYS[2])
`);

/**
 * Queue remove. KEYS: meta hash, id list, items hash; ARGV: ids. Unknown ids
 * are ignored; LREM from the head finds the ids a delivery removes (the
 * oldest) at once.
 */
export const QUEUE_REMOVE = new Script(`
local freed = 0
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[3], ARGV[i])
  if v then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('LREM', KEYS[2], 1, ARGV[i])
    freed = freed + tonumber(string.match(v, '^(%d+)|'))
  end
end
if freed > 0 then redis.call('HINCRBY', KEYS[1], 'bytes', -freed) end
return freed
`);

/**
 * Archive append. KEYS: 1 seq hash, 2 position counter, 3 conversation zset,
 * 4 position index of the store, 5 set of indexed owners, then nA owner
 * indexes, nA owner+peer indexes, nO per-owner conversation counts.
 * ARGV: 1 conversation, 2 timestamp × 1000 (the least position), 3 the
 * record's JSON without seq and pos, 4 nA, 5 nO, then the nA owners.
 * Returns [seq, position or ''].
 */
export const ARCHIVE_APPEND = new Script(`
local conv = ARGV[1]
local nA = tonumber(ARGV[4])
local nO = tonumber(ARGV[5])
local seq = string.format('%.0f', redis.call('HINCRBY', KEYS[1], conv, 1))
local body = string.sub(ARGV[3], 1, -2)
local pos = ''
if nA > 0 then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  pos = string.format('%.0f', math.max(last + 1, tonumber(ARGV[2])))
  redis.call('SET', KEYS[2], pos)
  local m = conv .. '\\0' .. seq
  redis.call('ZADD', KEYS[4], pos, m)
  for i = 1, nA do
    redis.call('ZADD', KEYS[5 + i], pos, m)
    redis.call('ZADD', KEYS[5 + nA + i], pos, m)
    redis.call('SADD', KEYS[5], ARGV[5 + i])
  end
  body = body .. ',"seq":' .. seq .. ',"pos":' .. pos .. '}'
else
  body = body .. ',"seq":' .. seq .. '}'
end
for i = 1, nO do redis.call('HINCRBY', KEYS[5 + 2 * nA + i], conv, 1) end
redis.call('ZADD', KEYS[3], seq, body)
return {seq, pos}
`);

/**
 * A conversation query with a time filter: walks the seq range (KEYS[1])
 * in chunks and keeps records whose timestamp is within bounds, up to
 * ARGV[3] of them. ARGV: lo, hi, want, reverse '1'|'0', start|'', end|''.
 */
export const ARCHIVE_QUERY_TIME = new Script(`
local lo, hi, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local s = ARGV[5] ~= '' and tonumber(ARGV[5]) or nil
local e = ARGV[6] ~= '' and tonumber(ARGV[6]) or nil
local out = {}
local off = 0
while #out < want do
  local chunk
  if ARGV[4] == '1' then
    chunk = redis.call('ZREVRANGEBYSCORE', KEYS[1], hi, lo, 'LIMIT', off, 256)
  else
    chunk = redis.call('ZRANGEBYSCORE', KEYS[1], lo, hi, 'LIMIT', off, 256)
  end
  if #chunk == 0 then break end
  for i = 1, #chunk do
    local ok, r = pcall(cjson.decode, chunk[i])
    local ts = ok and type(r) == 'table' and tonumber(r.timestamp) or nil
    if ts and (s == nil or ts >= s) and (e == nil or ts <= e) then
      out[#out + 1] = chunk[i]
      if #out >= want then break end
    end
  end
  off = off + #chunk
end
return out
`);

/**
 * A guarded write: runs the commands only if the record at seq ARGV[1] of the
 * conversation zset KEYS[1] is still exactly ARGV[2] (nobody rewrote or
 * removed it since it was read). ARGV[3…]: commands, each as its word count
 * then its words; DECRDEL key field decrements a hash field and removes it
 * at zero. Returns 1 when applied, 0 when the record changed.
 */
export const GUARDED = new Script(`
local cur = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])
if cur[1] ~= ARGV[2] then return 0 end
local i = 3
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  local cmd = {}
  for j = 1, k do cmd[j] = ARGV[i + j] end
  i = i + k + 1
  if cmd[1] == 'DECRDEL' then
    if redis.call('HINCRBY', cmd[2], cmd[3], -1) <= 0 then redis.call('HDEL', cmd[2], cmd[3]) end
  else
    redis.call(unpack(cmd))
  end
end
return 1
`);

/** Every script, loaded when a connection is ready. */
export const ALL_SCRIPTS = [
  KV_ENTRIES,
  QUEUE_PUSH,
  QUEUE_LIST,
  QUEUE_REMOVE,
  ARCHIVE_APPEND,
  ARCHIVE_QUERY_TIME,
  GUARDED,
];
