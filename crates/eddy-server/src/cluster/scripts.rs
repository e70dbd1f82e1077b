//! The Lua scripts that read and write presence in one round trip each, on Redis's own
//! clock (`TIME`), so expiry does not depend on the nodes' clocks agreeing. Called by
//! `EVALSHA`, falling back to `EVAL` (which caches the script) after a Redis restart.

use std::sync::OnceLock;

use redis::{Cmd, Connection, FromRedisValue, RedisResult, ToRedisArgs};

/// `now`, in milliseconds of Redis's clock.
macro_rules! now {
    () => {
        "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    };
}

/// Publish to the other live holders of a uid. KEYS: the uid's key. ARGV: this node, the
/// channel prefix, the message. Returns the nodes whose subscriber took it.
pub(crate) static SEND_UID: Script = Script::new(concat!(
    now!(),
    "local n = 0
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  if node ~= ARGV[1] and redis.call('PUBLISH', ARGV[2] .. node, ARGV[3]) > 0 then n = n + 1 end
end
return n"
));

/// Whether another node holds a uid. KEYS: the uid's key. ARGV: this node.
pub(crate) static IS_ONLINE: Script = Script::new(concat!(
    now!(),
    "for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  if node ~= ARGV[1] then return 1 end
end
return 0"
));

/// For each other live node with members in a group: publish (ARGV[5] not empty) or count.
/// KEYS: the nodes key. ARGV: this node, the groups prefix, the channel prefix, the group,
/// the message. Returns the nodes published to, or the members counted.
pub(crate) static GROUP: Script = Script::new(concat!(
    now!(),
    "local n = 0
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  if node ~= ARGV[1] then
    local members = tonumber(redis.call('HGET', ARGV[2] .. node, ARGV[4]) or '0') or 0
    if members > 0 then
      if ARGV[5] == '' then n = n + members
      elseif redis.call('PUBLISH', ARGV[3] .. node, ARGV[5]) > 0 then n = n + 1 end
    end
  end
end
return n"
));

/// The distinct uids of every live node: their number (ARGV[2] is 0) or up to ARGV[2] of
/// them, sorted. KEYS: the nodes key. ARGV: the uid-set prefix, the limit.
pub(crate) static ONLINE: Script = Script::new(concat!(
    now!(),
    "local keys = {}
for i, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  keys[i] = ARGV[1] .. node
end
if #keys == 0 then
  if ARGV[2] == '0' then return 0 end
  return {}
end
local all = redis.call('SUNION', unpack(keys))
if ARGV[2] == '0' then return #all end
table.sort(all)
local out = {}
for i = 1, math.min(#all, tonumber(ARGV[2])) do out[i] = all[i] end
return out"
));

/// Register (ARGV[3] is 1) or remove this node's binding of a uid. KEYS: the uid's key,
/// this node's uid set. ARGV: this node, the TTL in ms, 1 or 0, the encoded uid. Returns
/// how many nodes hold the uid now.
pub(crate) static REGISTER: Script = Script::new(concat!(
    now!(),
    "if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(top[2])))
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return redis.call('ZCARD', KEYS[1])
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[4])
return 0"
));

/// This node's heartbeat. KEYS: the nodes key, its uid set, its group hash. ARGV: this
/// node, the TTL in ms.
pub(crate) static HEARTBEAT: Script = Script::new(concat!(
    now!(),
    "redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(top[2])))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 1"
));

/// Take this node out of presence. KEYS: the nodes key, its uid set, its group hash. ARGV:
/// this node, the uid-key prefix. Returns the uids it held.
pub(crate) static LEAVE: Script = Script::new(
    "local uids = redis.call('SMEMBERS', KEYS[2])
for _, uid in ipairs(uids) do redis.call('ZREM', ARGV[2] .. uid, ARGV[1]) end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
return #uids",
);

/// A Lua script and its SHA-1, computed once.
pub(crate) struct Script {
    source: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: OnceLock::new(),
        }
    }

    fn sha(&self) -> &str {
        self.sha
            .get_or_init(|| sha1_smol::Sha1::from(self.source).digest().to_string())
    }

    /// `EVALSHA`, for a pipeline (whose scripts must be loaded first: see [`load`]).
    ///
    /// [`load`]: Self::load
    pub(crate) fn cmd(&self, keys: &[&dyn ToArg], args: &[&dyn ToArg]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.sha()).arg(keys.len());
        for arg in keys.iter().chain(args) {
            arg.push(&mut cmd);
        }
        cmd
    }

    /// Make sure Redis has the script (after a connect: a restarted Redis has none).
    pub(crate) fn load(&self, conn: &mut Connection) -> RedisResult<()> {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .query(conn)?;
        debug_assert_eq!(sha, self.sha());
        Ok(())
    }

    /// Run it: `EVALSHA`, or `EVAL` when Redis does not have it.
    pub(crate) fn run<T: FromRedisValue>(
        &self,
        conn: &mut Connection,
        keys: &[&dyn ToArg],
        args: &[&dyn ToArg],
    ) -> RedisResult<T> {
        match self.cmd(keys, args).query(conn) {
            Err(err) if err.code() == Some("NOSCRIPT") => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(self.source).arg(keys.len());
                for arg in keys.iter().chain(args) {
                    arg.push(&mut cmd);
                }
                cmd.query(conn)
            }
            other => other,
        }
    }
}

/// Every script, to load after a connect.
pub(crate) fn all() -> [&'static Script; 7] {
    [
        &SEND_UID, &IS_ONLINE, &GROUP, &ONLINE, &REGISTER, &HEARTBEAT, &LEAVE,
    ]
}

/// A script argument of any type (keys and values are bytes, strings or numbers).
pub(crate) trait ToArg {
    fn push(&self, cmd: &mut Cmd);
}

impl<T: ToRedisArgs> ToArg for T {
    fn push(&self, cmd: &mut Cmd) {
        cmd.arg(self);
    }
}
