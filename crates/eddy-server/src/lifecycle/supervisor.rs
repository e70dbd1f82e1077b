//! The supervisor: the thread that called `run`. It starts the reactors accepting (each
//! accepts for itself: `reactor::accept`), watches for signals, runs the heartbeat, reloads
//! and admin commands, and leads the shutdown.

use std::{
    os::fd::AsFd,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use super::{
    roles::Lifecycle,
    signals::{SignalAction, Signals},
};
use crate::{
    error::panic_message,
    message::CommandTarget,
    net::Listener,
    shared::{Command, ReloadScope, ServerHandle, Shared},
    sys::Events,
};

/// Poller key of the first signal pipe; the others count down from it.
const SIGNAL_KEY: usize = usize::MAX - 1;

/// Supervises until a shutdown is requested (by a handle or a signal).
pub(crate) struct Supervisor<'a> {
    pub(super) shared: &'a Arc<Shared>,
    /// The stream listeners, by listener index, for the reactors to accept on.
    listeners: &'a [Option<Arc<Listener>>],
    signals: Option<Signals>,
    /// The main handler: `on_before_reload` and `on_after_reload` run here.
    main: &'a mut dyn Lifecycle,
    /// When the running reload must be over.
    pub(super) reload_deadline: Option<Instant>,
}

impl<'a> Supervisor<'a> {
    pub(crate) fn new(
        shared: &'a Arc<Shared>,
        listeners: &'a [Option<Arc<Listener>>],
        signals: Option<Signals>,
        main: &'a mut dyn Lifecycle,
    ) -> Self {
        Supervisor {
            shared,
            listeners,
            signals,
            main,
            reload_deadline: None,
        }
    }

    /// Every reactor starts accepting on the stream listeners.
    fn start_accepting(&self) {
        let listeners: Arc<[(usize, Arc<Listener>)]> = self
            .listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.clone()?)))
            .collect();
        for reactor in self.shared.outlet.reactors() {
            reactor.command(Command::Accept(listeners.clone()));
        }
    }

    /// Run until a shutdown is requested; returns when a shutdown was requested, with the signal handlers
    /// (kept until the end of the shutdown, for a second SIGINT).
    pub(crate) fn run(mut self) -> (std::io::Result<()>, Option<Signals>) {
        let result = self.serve();
        self.shared.supervisor_commands.close();
        // (Also when serving failed: the shutdown follows.)
        if let Some(signals) = &self.signals {
            signals.shutting_down();
        }
        (result, self.signals.take())
    }

    fn serve(&mut self) -> std::io::Result<()> {
        let poller = self.shared.supervisor.clone();
        if let Some(signals) = &self.signals {
            // The pipes live in `self`, which outlives the loop; deleted below.
            for (index, (rx, _)) in signals.pipes.iter().enumerate() {
                poller.add(rx.as_fd(), SIGNAL_KEY - index, true, false)?;
            }
        }
        self.start_accepting();
        let mut events = Events::with_capacity(64);
        let heartbeat = self.shared.config.heartbeat_check_interval;
        let mut next_heartbeat = heartbeat.map(|every| Instant::now() + every);
        let server = ServerHandle {
            shared: self.shared.clone(),
        };
        while !self.shared.shutdown_requested.load(Ordering::Acquire) {
            // Sleep until something happens or a timer is due: nothing polls in between.
            let due = [next_heartbeat, self.reload_deadline]
                .into_iter()
                .flatten()
                .min();
            let timeout = due.map(|t| t.saturating_duration_since(Instant::now()));
            poller.wait(&mut events, timeout)?;
            for ev in events.iter() {
                if ev.key > SIGNAL_KEY - 8 {
                    self.on_signal(SIGNAL_KEY - ev.key);
                }
            }
            if let (Some(due), Some(every)) = (next_heartbeat, heartbeat) {
                if Instant::now() >= due {
                    server.heartbeat(true);
                    next_heartbeat = Some(Instant::now() + every);
                }
            }
            self.step_reload(&server);
            while let Some(call) = self.shared.supervisor_commands.next() {
                call.run(&server, CommandTarget::Supervisor);
            }
        }
        // Commands asked from now on are refused, not left queued.
        self.shared.supervisor_commands.close();
        // The shutdown has begun: from now on a second SIGINT exits at once, also while the
        // hook below runs (it may never return).
        if let Some(signals) = &self.signals {
            signals.shutting_down();
        }
        // Still serving: the application's last word before the shutdown proper.
        self.lifecycle("on_before_shutdown", |main| {
            main.on_before_shutdown(&server)
        });
        if let Some(signals) = &self.signals {
            for (rx, _) in &signals.pipes {
                let _ = poller.delete(rx.as_fd());
            }
        }
        if self.reload_deadline.is_some() {
            self.end_reload(&server);
        }
        Ok(())
    }

    /// The signal pipe at `index` is readable: act on its signal.
    fn on_signal(&mut self, index: usize) {
        match self.signals.as_mut().and_then(|s| s.drain(index)) {
            Some(SignalAction::Shutdown) => {
                tracing::info!("signal received: shutting down");
                self.shared
                    .shutdown_requested
                    .store(true, Ordering::Release);
            }
            Some(SignalAction::Reload(scope)) => {
                tracing::info!(?scope, "signal received: reloading");
                let _ = self.shared.reload.request(scope);
                if scope == ReloadScope::All {
                    self.reload_tls();
                }
            }
            None => {}
        }
    }

    /// SIGUSR1: every TLS listener reads its files again (a failure keeps the old ones).
    fn reload_tls(&self) {
        for (index, listener) in self.shared.config.listeners.iter().enumerate() {
            let Some(acceptor) = &listener.tls else {
                continue;
            };
            match acceptor.reload() {
                Ok(()) => tracing::info!(listener = index, "TLS certificates reloaded"),
                Err(err) => tracing::error!(
                    listener = index,
                    "TLS reload failed, keeping the certificates in use: {err}"
                ),
            }
        }
    }

    /// Run a main-handler callback, catching a panic so the supervisor carries on.
    pub(super) fn lifecycle(&mut self, what: &'static str, f: impl FnOnce(&mut dyn Lifecycle)) {
        let main = &mut *self.main;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(main))) {
            tracing::error!(
                callback = what,
                "handler panicked: {}",
                panic_message(&*panic)
            );
        }
    }
}
