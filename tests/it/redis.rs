//! A real `redis-server` for the cluster tests (shared with the cluster bench).

pub use eddy_bench::redis_server::RedisServer as Redis;
