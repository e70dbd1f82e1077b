//! Picking the worker for each event: one dispatcher per reactor, with its own cursor.

use std::{
    net::IpAddr,
    panic::{catch_unwind, AssertUnwindSafe},
};

use super::mode::{DispatchInfo, DispatchMode};
use crate::{conn::ConnId, error::panic_message, net::PeerAddr};

/// How loaded the workers are, as the idle mode sees them.
pub(crate) trait Load {
    /// Whether the worker is waiting for work (not busy, not rebuilding its handler).
    fn is_idle(&self, worker: usize) -> bool;
    /// Whether the worker is rebuilding its handler (a reload, `stop_worker`): it takes its
    /// events only once `on_worker_start` has run again.
    fn is_stopping(&self, worker: usize) -> bool;
    /// Events waiting in the worker's queue.
    fn depth(&self, worker: usize) -> usize;
}

/// The connection an event belongs to, as dispatch sees it.
#[derive(Debug)]
pub(crate) struct Subject<'a> {
    pub(crate) conn: ConnId,
    pub(crate) peer: &'a PeerAddr,
    pub(crate) uid_hash: Option<u64>,
    /// The worker the previous event went to.
    pub(crate) last: Option<usize>,
    /// Whether an earlier event of the connection is still queued or running.
    pub(crate) in_flight: bool,
    pub(crate) data: Option<&'a [u8]>,
}

/// One reactor's dispatcher (its round-robin cursor is its own: no shared counter).
#[derive(Debug)]
pub(crate) struct Dispatcher {
    mode: DispatchMode,
    workers: usize,
    cursor: usize,
    /// The reactor this dispatcher belongs to (its own worker in `Reactor` mode).
    reactor: usize,
    /// A custom dispatch function panicked (and was logged) on this reactor.
    custom_panicked: bool,
}

impl Dispatcher {
    pub(crate) fn new(mode: DispatchMode, workers: usize, start: usize) -> Self {
        Dispatcher {
            mode,
            workers,
            cursor: start % workers,
            reactor: start,
            custom_panicked: false,
        }
    }

    pub(crate) fn is_stateful(&self) -> bool {
        self.mode.is_stateful()
    }

    fn next(&mut self) -> usize {
        let w = self.cursor;
        self.cursor = (self.cursor + 1) % self.workers;
        w
    }

    /// An idle worker with an empty queue, looking from the cursor on; else the shortest
    /// queue.
    fn idlest(&mut self, load: &dyn Load) -> usize {
        let n = self.workers;
        for _ in 0..n {
            let w = self.next();
            if load.is_idle(w) && load.depth(w) == 0 {
                return w;
            }
        }
        // None idle: the shortest queue, of a worker not rebuilding if there is one.
        (0..n)
            .min_by_key(|&w| (load.is_stopping(w), load.depth(w)))
            .unwrap_or(0)
    }

    fn by_slot(&self, s: &Subject<'_>) -> usize {
        s.conn.slot() as usize % self.workers
    }

    /// The worker for the next event of `s`.
    pub(crate) fn pick(&mut self, s: &Subject<'_>, load: &dyn Load) -> usize {
        let n = self.workers;
        match &self.mode {
            DispatchMode::Fd => self.by_slot(s),
            DispatchMode::Reactor => self.reactor,
            DispatchMode::RoundRobin => self.next(),
            DispatchMode::Idle => self.idlest(load),
            DispatchMode::Ip => match s.peer {
                PeerAddr::Tcp(addr) => (ip_hash(addr.ip()) % n as u64) as usize,
                PeerAddr::Unix => self.by_slot(s),
            },
            DispatchMode::Uid => {
                let target = match s.uid_hash {
                    Some(hash) => (hash % n as u64) as usize,
                    None => self.by_slot(s),
                };
                // Switch workers only between events, never with one still in flight.
                match s.last {
                    Some(last) if s.in_flight => last,
                    _ => target,
                }
            }
            DispatchMode::Custom(f) => {
                let info = DispatchInfo {
                    conn: s.conn,
                    peer: s.peer,
                    data: s.data,
                    last_worker: s.last,
                    worker_num: n,
                };
                // A user function is checked, not trusted: an answer out of range, or a panic,
                // falls back to fd modulo rather than unwinding the reactor.
                match catch_unwind(AssertUnwindSafe(|| f(&info))) {
                    Ok(Some(w)) if w < n => w,
                    Ok(_) => self.by_slot(s),
                    Err(panic) => {
                        if !self.custom_panicked {
                            self.custom_panicked = true;
                            tracing::error!(
                                reactor = self.reactor,
                                "custom dispatch function panicked: {}; using fd modulo for \
                                 the events it fails on (logged once per reactor)",
                                panic_message(&*panic)
                            );
                        }
                        self.by_slot(s)
                    }
                }
            }
        }
    }
}

impl Dispatcher {
    /// The worker for a datagram from a peer whose address hashes to `peer_hash`: the stateful
    /// modes keep a peer on one worker (by its address), round robin and idle spread, the
    /// reactor mode runs it inline. A custom function sees stream events only; datagrams
    /// go by peer.
    pub(crate) fn pick_datagram(&mut self, peer_hash: u64, load: &dyn Load) -> usize {
        let n = self.workers;
        match &self.mode {
            DispatchMode::Reactor => self.reactor,
            DispatchMode::RoundRobin => self.next(),
            DispatchMode::Idle => self.idlest(load),
            DispatchMode::Fd | DispatchMode::Ip | DispatchMode::Uid | DispatchMode::Custom(_) => {
                (peer_hash % n as u64) as usize
            }
        }
    }
}

fn ip_hash(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u64::from(u32::from(v4)),
            None => {
                use std::hash::Hasher;
                let mut h = crate::conn::FnvHasher::default();
                h.write(&v6.octets());
                h.finish()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeLoad {
        idle: Vec<bool>,
        depth: Vec<usize>,
        stopping: Vec<bool>,
    }

    impl Load for FakeLoad {
        fn is_idle(&self, w: usize) -> bool {
            self.idle[w]
        }
        fn is_stopping(&self, w: usize) -> bool {
            self.stopping.get(w).copied().unwrap_or(false)
        }
        fn depth(&self, w: usize) -> usize {
            self.depth[w]
        }
    }

    fn busy(n: usize) -> FakeLoad {
        FakeLoad {
            idle: vec![false; n],
            depth: vec![1; n],
            stopping: Vec::new(),
        }
    }

    fn subject<'a>(slot: u32, peer: &'a PeerAddr) -> Subject<'a> {
        Subject {
            conn: ConnId::new(slot, 1),
            peer,
            uid_hash: None,
            last: None,
            in_flight: false,
            data: None,
        }
    }

    fn tcp(ip: &str) -> PeerAddr {
        PeerAddr::Tcp(format!("{ip}:1000").parse().unwrap())
    }

    #[test]
    fn fd_mode_is_slot_modulo() {
        let mut d = Dispatcher::new(DispatchMode::Fd, 4, 0);
        let peer = tcp("127.0.0.1");
        for slot in 0..20 {
            assert_eq!(d.pick(&subject(slot, &peer), &busy(4)), slot as usize % 4);
        }
    }

    #[test]
    fn reactor_mode_keeps_events_on_their_reactor() {
        let mut d = Dispatcher::new(DispatchMode::Reactor, 4, 2);
        let peer = tcp("127.0.0.1");
        for slot in 0..10 {
            assert_eq!(d.pick(&subject(slot, &peer), &busy(4)), 2);
        }
    }

    #[test]
    fn round_robin_cycles() {
        let mut d = Dispatcher::new(DispatchMode::RoundRobin, 3, 1);
        let peer = tcp("127.0.0.1");
        let picks: Vec<_> = (0..6)
            .map(|_| d.pick(&subject(0, &peer), &busy(3)))
            .collect();
        assert_eq!(picks, [1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn idle_prefers_idle_then_shortest_queue() {
        let mut d = Dispatcher::new(DispatchMode::Idle, 3, 0);
        let peer = tcp("127.0.0.1");
        let load = FakeLoad {
            idle: vec![false, false, true],
            depth: vec![5, 1, 0],
            stopping: Vec::new(),
        };
        assert_eq!(d.pick(&subject(0, &peer), &load), 2);
        let load = FakeLoad {
            idle: vec![false, false, false],
            depth: vec![5, 1, 3],
            stopping: Vec::new(),
        };
        assert_eq!(d.pick(&subject(0, &peer), &load), 1);
        // A worker rebuilding its handler comes last, whatever its queue.
        let load = FakeLoad {
            idle: vec![false, false, false],
            depth: vec![5, 0, 3],
            stopping: vec![false, true, false],
        };
        assert_eq!(d.pick(&subject(0, &peer), &load), 2);
    }

    #[test]
    fn ip_mode_keeps_one_ip_on_one_worker() {
        let mut d = Dispatcher::new(DispatchMode::Ip, 4, 0);
        let a = tcp("10.0.0.5");
        let first = d.pick(&subject(1, &a), &busy(4));
        for slot in 2..10 {
            assert_eq!(d.pick(&subject(slot, &a), &busy(4)), first);
        }
        assert_eq!(first, 5 % 4);
        let v6 = tcp("[::1]");
        let w = d.pick(&subject(1, &v6), &busy(4));
        assert_eq!(d.pick(&subject(9, &v6), &busy(4)), w);
    }

    #[test]
    fn uid_mode_switches_only_between_events() {
        let mut d = Dispatcher::new(DispatchMode::Uid, 4, 0);
        let peer = tcp("127.0.0.1");
        let mut s = subject(1, &peer);
        assert_eq!(d.pick(&s, &busy(4)), 1, "unbound: by slot");
        s.uid_hash = Some(7);
        s.last = Some(1);
        s.in_flight = true;
        assert_eq!(d.pick(&s, &busy(4)), 1, "bound while busy: stays");
        s.in_flight = false;
        assert_eq!(d.pick(&s, &busy(4)), 3, "bound and quiet: uid % 4");
    }

    #[test]
    fn custom_mode_falls_back_on_bad_answers() {
        let mut d = Dispatcher::new(
            DispatchMode::custom(|info| info.data.map(|d| d.len())),
            4,
            0,
        );
        let peer = tcp("127.0.0.1");
        let mut s = subject(6, &peer);
        assert_eq!(d.pick(&s, &busy(4)), 2, "None → slot");
        s.data = Some(b"abc");
        assert_eq!(d.pick(&s, &busy(4)), 3);
        s.data = Some(b"abcdefgh");
        assert_eq!(d.pick(&s, &busy(4)), 2, "out of range → slot");
    }

    #[test]
    fn parses_mode_names() {
        for name in ["fd", "round-robin", "idle", "ip", "uid", "reactor"] {
            assert!(name.parse::<DispatchMode>().is_ok());
        }
        assert!("fdmod".parse::<DispatchMode>().is_err());
        assert!(DispatchMode::Fd.is_stateful() && !DispatchMode::Idle.is_stateful());
    }
}
