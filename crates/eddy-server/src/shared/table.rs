//! The connection table: connection ids to connection records, from any thread.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

use parking_lot::Mutex;

use crate::conn::{Conn, ConnId};

const CHUNK: usize = 1024;
/// Freed slots wait in line at least this long (in frees) before reuse, when fresh slots
/// remain: a stale id then usually points at an empty slot, not a new generation.
const REUSE_AFTER: usize = 256;

/// Slots of connection records, allocated a chunk at a time as connections arrive.
///
/// A lookup locks one slot (never the table) just long enough to clone the record's `Arc`.
#[derive(Debug)]
pub(crate) struct ConnTable {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    capacity: usize,
    free: Mutex<FreeSlots>,
    len: AtomicUsize,
    /// Slots below this index have been used at least once (the end of any walk).
    used: AtomicUsize,
    /// Live connections per listener.
    per_listener: Box<[AtomicUsize]>,
}

#[derive(Debug, Default)]
struct Slot {
    generation: AtomicU32,
    conn: Mutex<Option<Arc<Conn>>>,
}

#[derive(Debug, Default)]
struct FreeSlots {
    next_fresh: usize,
    recycled: VecDeque<u32>,
}

impl ConnTable {
    pub(crate) fn new(capacity: usize, listeners: usize) -> Self {
        let chunks = capacity.div_ceil(CHUNK);
        ConnTable {
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            capacity,
            free: Mutex::new(FreeSlots::default()),
            len: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            per_listener: (0..listeners).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        let chunk = self.chunks.get(index / CHUNK)?.get()?;
        chunk.get(index % CHUNK)
    }

    fn slot_or_init(&self, index: usize) -> &Slot {
        let chunk = self.chunks[index / CHUNK]
            .get_or_init(|| (0..CHUNK).map(|_| Slot::default()).collect());
        &chunk[index % CHUNK]
    }

    /// Take a slot and store the record `make` builds for its new id. `None` when the table
    /// holds `capacity` connections already (`max_conn`).
    pub(crate) fn insert(&self, make: impl FnOnce(ConnId) -> Conn) -> Option<Arc<Conn>> {
        let index = {
            let mut free = self.free.lock();
            let fresh_left = free.next_fresh < self.capacity;
            if free.recycled.len() > REUSE_AFTER || !fresh_left {
                free.recycled.pop_front()? as usize
            } else {
                free.next_fresh += 1;
                self.used.store(free.next_fresh, Ordering::Release);
                free.next_fresh - 1
            }
        };
        let slot = self.slot_or_init(index);
        let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let conn = Arc::new(make(ConnId::new(index as u32, generation)));
        *slot.conn.lock() = Some(conn.clone());
        self.len.fetch_add(1, Ordering::Relaxed);
        if let Some(count) = self.per_listener.get(conn.listener) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        Some(conn)
    }

    /// The live connection with this id, if any.
    pub(crate) fn get(&self, id: ConnId) -> Option<Arc<Conn>> {
        let slot = self.slot(id.slot() as usize)?;
        let conn = slot.conn.lock();
        conn.as_ref().filter(|conn| conn.id == id).cloned()
    }

    /// Forget the connection; its slot can be reused under a new generation. Returns whether
    /// the id was present.
    pub(crate) fn remove(&self, id: ConnId) -> bool {
        let Some(slot) = self.slot(id.slot() as usize) else {
            return false;
        };
        {
            let mut conn = slot.conn.lock();
            match conn.take() {
                Some(found) if found.id == id => {
                    if let Some(count) = self.per_listener.get(found.listener) {
                        count.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                other => {
                    *conn = other;
                    return false;
                }
            }
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        // A slot whose generation would wrap is retired: its ids stay unique forever.
        if slot.generation.load(Ordering::Acquire) != u32::MAX {
            self.free.lock().recycled.push_back(id.slot());
        }
        true
    }

    /// Connections in the table.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Connections in the table accepted by listener `index`.
    pub(crate) fn len_on(&self, index: usize) -> usize {
        self.per_listener
            .get(index)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// The first connection at slot `from` or above, with its slot. Slots are walked in order,
    /// so one walk never returns a connection twice.
    pub(crate) fn next_from(&self, from: usize) -> Option<(usize, Arc<Conn>)> {
        let end = self.used.load(Ordering::Acquire);
        let mut index = from;
        while index < end {
            let Some(chunk) = self.chunks[index / CHUNK].get() else {
                index = (index / CHUNK + 1) * CHUNK;
                continue;
            };
            if let Some(conn) = chunk[index % CHUNK].conn.lock().clone() {
                return Some((index, conn));
            }
            index += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::net::{PeerAddr, Stream};

    #[test]
    fn walks_every_connection_once_in_slot_order() {
        let table = ConnTable::new(3000, 1);
        let held: Vec<_> = (0..2100).map(|_| conn(&table).unwrap()).collect();
        for c in held.iter().skip(1).step_by(2) {
            table.remove(c.id);
        }
        let mut seen = Vec::new();
        let mut from = 0;
        while let Some((slot, c)) = table.next_from(from) {
            seen.push(c.id);
            from = slot + 1;
        }
        let expected: Vec<_> = held.iter().step_by(2).map(|c| c.id).collect();
        assert_eq!(seen, expected);
        assert_eq!(table.len_on(0), expected.len());
        assert_eq!(table.len_on(5), 0);
    }

    fn conn(table: &ConnTable) -> Option<Arc<Conn>> {
        let (a, _b) = UnixStream::pair().unwrap();
        table.insert(|id| Conn::new(id, Stream::from(a), 0, 0, PeerAddr::Unix, 0))
    }

    #[test]
    fn capacity_is_max_conn() {
        let table = ConnTable::new(3, 1);
        let held: Vec<_> = (0..3).map(|_| conn(&table).unwrap()).collect();
        assert!(conn(&table).is_none(), "full");
        assert_eq!(table.len(), 3);
        assert!(table.remove(held[1].id));
        assert!(!table.remove(held[1].id), "removed once");
        let again = conn(&table).unwrap();
        assert_eq!(
            again.id.slot(),
            held[1].id.slot(),
            "the freed slot is reused"
        );
        assert_ne!(again.id, held[1].id, "under a new generation");
        assert!(
            table.get(held[1].id).is_none(),
            "the stale id finds nothing"
        );
        assert!(Arc::ptr_eq(&table.get(again.id).unwrap(), &again));
    }

    #[test]
    fn fresh_slots_are_preferred_so_stale_ids_usually_find_nothing() {
        let table = ConnTable::new(10_000, 1);
        let first = conn(&table).unwrap();
        table.remove(first.id);
        let second = conn(&table).unwrap();
        assert_ne!(first.id.slot(), second.id.slot());
    }

    #[test]
    fn a_slot_whose_generation_would_wrap_is_retired() {
        let table = ConnTable::new(1, 1);
        let first = conn(&table).unwrap();
        table
            .slot(0)
            .unwrap()
            .generation
            .store(u32::MAX, Ordering::Release);
        table.remove(first.id);
        assert!(conn(&table).is_none(), "never reused, so no id can repeat");
    }

    #[test]
    fn concurrent_churn_keeps_the_count_exact() {
        let table = Arc::new(ConnTable::new(4096, 1));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let c = conn(&table).unwrap();
                        assert!(table.get(c.id).is_some());
                        assert!(table.remove(c.id));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(table.len(), 0);
    }
}
