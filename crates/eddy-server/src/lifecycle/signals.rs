//! Signals: SIGTERM and SIGINT shut down, SIGUSR1 reloads, SIGUSR2 reloads the task workers;
//! each kind is written to a pipe that the accept loop watches.

use std::{
    io::Read,
    os::unix::net::UnixStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use crate::shared::ReloadScope;

/// What a signal asks for.
#[derive(Clone, Copy, Debug)]
pub(super) enum SignalAction {
    Shutdown,
    Reload(ReloadScope),
}

/// SIGTERM and SIGINT (shut down), SIGUSR1 (reload) and SIGUSR2 (reload the task workers),
/// each kind written to a pipe the accept loop watches. Once a shutdown has begun, a second
/// SIGINT exits the process at once (code 130).
pub(crate) struct Signals {
    pub(super) pipes: Vec<(UnixStream, SignalAction)>,
    ids: Vec<signal_hook::SigId>,
    shutting_down: Arc<AtomicBool>,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        let mut signals = Signals {
            pipes: Vec::new(),
            ids: Vec::new(),
            shutting_down: Arc::new(AtomicBool::new(false)),
        };
        // Registered first, so it runs before the pipe write: exits only once shutting down.
        signals
            .ids
            .push(signal_hook::flag::register_conditional_shutdown(
                SIGINT,
                130,
                signals.shutting_down.clone(),
            )?);
        let kinds: [(&[i32], SignalAction); 3] = [
            (&[SIGTERM, SIGINT], SignalAction::Shutdown),
            (&[SIGUSR1], SignalAction::Reload(ReloadScope::All)),
            (&[SIGUSR2], SignalAction::Reload(ReloadScope::TaskWorkers)),
        ];
        for (numbers, action) in kinds {
            let (rx, tx) = UnixStream::pair()?;
            rx.set_nonblocking(true)?;
            tx.set_nonblocking(true)?;
            for &signal in numbers {
                signals.ids.push(signal_hook::low_level::pipe::register(
                    signal,
                    tx.try_clone()?,
                )?);
            }
            signals.pipes.push((rx, action));
        }
        Ok(signals)
    }

    /// Whether the pipe at `index` had a signal in it (emptied).
    pub(super) fn drain(&mut self, index: usize) -> Option<SignalAction> {
        let (rx, action) = self.pipes.get_mut(index)?;
        let mut buf = [0u8; 16];
        let mut got = false;
        while let Ok(n) = rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            got = true;
        }
        got.then_some(*action)
    }

    /// From now on a SIGINT exits at once.
    pub(crate) fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
