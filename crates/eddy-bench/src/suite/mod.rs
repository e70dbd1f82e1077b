//! The echo benchmark suite behind `cargo bench --bench echo`.
//!
//! Every server of [`servers::SERVERS`] runs as a child process, started
//! afresh for each scenario; eddy-load drives it in-process with identical
//! settings, and the child's CPU time and RSS are read from `/proc`. The
//! WebSocket scenarios ([`load::WS_SCENARIOS`]) do the same with
//! [`servers::WS_SERVERS`]: eddy's WebSocket listener against
//! tokio-tungstenite; the UDP scenarios ([`load::UDP_SCENARIOS`]) run
//! on [`servers::UDP_SERVERS`]: eddy's `listen_udp` against a tokio
//! `UdpSocket` echo; the TLS scenarios ([`load::TLS_SCENARIOS`]) on
//! [`servers::TLS_SERVERS`]: eddy with `.tls(..)` against tokio-rustls, with a
//! certificate made for the run ([`TestCert`]).
//! [`run_suite`] returns every figure; [`SuiteReport::render`] prints them
//! as one table.

pub mod accept;
pub mod goals;
pub mod idle;
pub mod load;
pub mod machine;
pub mod options;
pub mod probe;
pub mod rows;
pub mod servers;
pub mod table;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use crate::child::ServerChild;
use crate::tls_cert::TestCert;
use machine::Machine;
use options::{Profile, Settings, SuiteOptions};
use rows::Row;
use servers::{ServerSpec, SERVERS, TLS_SERVERS, TOKIO_WS, UDP_SERVERS, WS_SERVERS};

/// A measurement's error, for display.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// File descriptors the bench needs beyond the idle connections.
const FD_MARGIN: u64 = 64;

/// Everything one run of the suite measured.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// Run lengths used.
    pub profile: Profile,
    /// The settings of that profile.
    pub settings: Settings,
    /// Load-generator threads.
    pub load_threads: usize,
    /// What it ran on.
    pub machine: Machine,
    /// The table, row by row.
    pub rows: Vec<Row>,
}

impl SuiteReport {
    /// Whether any measurement failed.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.failed)
    }

    /// A line describing the run, then the table, then notes on the
    /// WebSocket rows.
    pub fn render(&self) -> String {
        let m = &self.machine;
        let s = &self.settings;
        let mut out = format!(
            "{} cores, {}, Linux {}; {:?} profile: load rows are medians of {} interleaved \
             rounds (the servers' order reversed every other round) of {:.1} s per server, each \
             after {:.1} s of warm-up; eddy-load with {} \
             thread(s), length framing (ws rows: WebSocket binary messages, each frame masked \
             with a fresh key)\n\n{}",
            m.cores,
            m.cpu_model,
            m.kernel,
            self.profile,
            s.rounds,
            s.duration.as_secs_f64(),
            s.warmup.as_secs_f64(),
            self.load_threads,
            table::render(&self.rows)
        );
        out.push_str(&goals::summary(&self.rows));
        let deflated: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
                let fraction = r.details.get("wire_fraction")?.as_f64()?;
                Some(format!("{:.0}% ({})", fraction * 100.0, r.server))
            })
            .collect();
        if !deflated.is_empty() {
            out.push_str(&format!(
                "\nws+deflate: JSON-like text, partly compressible; both sides compress (level 1, \
                 context takeover) and the echoes arrived at {} of their uncompressed size. \
                 tokio-tungstenite has no permessage-deflate, so that scenario is eddy only.\n",
                deflated.join(", ")
            ));
        }
        let udp: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| {
                let lost = r.details.get("lost")?.as_u64()?;
                let fraction = r.details.get("lost_fraction")?.as_f64()?;
                Some(format!(
                    "{} {} {lost} ({:.3}%)",
                    r.scenario.trim_start_matches("udp "),
                    r.server,
                    fraction * 100.0
                ))
            })
            .collect();
        let mut handshakes: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| r.scenario.starts_with("tls ") && !r.scenario.contains("handshakes"))
            .filter_map(|r| r.details.get("handshake_p50_us")?.as_f64())
            .collect();
        handshakes.sort_by(f64::total_cmp);
        if let (Some(low), Some(high)) = (handshakes.first(), handshakes.last()) {
            out.push_str(&format!(
                "\ntls: TLS 1.3, rustls on ring on both sides (eddy's TlsConfig; tokio-rustls), a \
                 self-signed ECDSA P-256 certificate made for the run; eddy-load verifies it and \
                 keeps no session cache, so every handshake is a full one. The echo rows' 50 \
                 handshakes are done before the clock starts (all at once: median {} to {} µs \
                 over the rows); the handshakes row counts cycles of connect, handshake, one \
                 64-byte round trip and close (p50/p99 are a cycle's).\n",
                table::number(*low),
                table::number(*high)
            ));
        }
        if !udp.is_empty() {
            out.push_str(&format!(
                "\nudp: connected UDP sockets, 64-byte datagrams; a datagram not echoed within \
                 200 ms counts as lost and is replaced (it costs the run its wait). Lost, over \
                 all rounds: {}.\n",
                udp.join("; ")
            ));
        }
        out
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// Runs every scenario and connection row against every server, starting
/// them from `program` (a binary that understands `--serve`, e.g. the bench
/// itself or `eddy-baseline`). Progress goes to stderr. A server that fails
/// to start or a measurement that fails gives a failed row; the rest runs.
pub fn run_suite(program: &Path, opts: &SuiteOptions) -> SuiteReport {
    let settings = opts.profile.settings();
    let nofile = probe::raise_nofile();
    let mut rows = Vec::new();
    let threads = opts.load_threads;
    let plain = Context::default();
    for scenario in load::SCENARIOS.iter().filter(|s| opts.wants(s.name)) {
        rows.extend(load_rows(
            program, scenario, &SERVERS, &settings, &plain, threads,
        ));
    }
    for scenario in load::WS_SCENARIOS.iter().filter(|s| opts.wants(s.name)) {
        if scenario.deflate {
            // tokio-tungstenite cannot: eddy only, and the table says so.
            let eddy = &WS_SERVERS[..2];
            rows.extend(load_rows(
                program, scenario, eddy, &settings, &plain, threads,
            ));
            rows.push(Row::noted(
                scenario.name,
                TOKIO_WS,
                "n/a: tokio-tungstenite has no permessage-deflate",
            ));
        } else {
            rows.extend(load_rows(
                program,
                scenario,
                &WS_SERVERS,
                &settings,
                &plain,
                threads,
            ));
        }
    }
    for scenario in load::UDP_SCENARIOS.iter().filter(|s| opts.wants(s.name)) {
        rows.extend(load_rows(
            program,
            scenario,
            &UDP_SERVERS,
            &settings,
            &plain,
            threads,
        ));
    }
    rows.extend(tls_rows(program, opts, &settings));
    let idle_name = format!(
        "idle RSS, {} conn",
        table::number(settings.idle_conns as f64)
    );
    for spec in SERVERS.iter().filter(|_| opts.wants(&idle_name)) {
        rows.push(run_one(program, spec, &idle_name, |child| {
            check_nofile(&nofile, settings.idle_conns)?;
            idle::idle_rss_row(child, settings.idle_conns, &idle_name, spec.name)
        }));
    }
    let accept_name = format!("accept, {} conn", table::number(settings.accepts as f64));
    for spec in SERVERS.iter().filter(|_| opts.wants(&accept_name)) {
        rows.push(run_one(program, spec, &accept_name, |child| {
            let threads = settings.accept_threads;
            accept::accept_row(child, settings.accepts, threads, &accept_name, spec.name)
        }));
    }
    let idle_cpu_name = format!("idle CPU, {:.1} s", settings.idle_window.as_secs_f64());
    for spec in SERVERS.iter().filter(|_| opts.wants(&idle_cpu_name)) {
        rows.push(run_one(program, spec, &idle_cpu_name, |child| {
            idle::idle_cpu_row(child, settings.idle_window, &idle_cpu_name, spec.name)
        }));
    }
    if opts.wants("broadcast") {
        rows.push(Row::noted(
            "broadcast",
            "eddy",
            "see `cargo bench --bench table` (TCP and WebSocket)",
        ));
    }
    rows.extend(task_rows(opts, &settings));
    rows::fill_ratios(&mut rows);
    SuiteReport {
        profile: opts.profile,
        settings,
        load_threads: opts.load_threads,
        machine: Machine::detect(),
        rows,
    }
}

/// What a load scenario's servers and client need besides the scenario: over TLS, the
/// certificate.
#[derive(Debug, Default)]
struct Context {
    cert: Option<TestCert>,
}

/// The TLS scenarios' rows, on a certificate made for them (removed when they are done). If
/// it cannot be made, each row says why.
fn tls_rows(program: &Path, opts: &SuiteOptions, settings: &Settings) -> Vec<Row> {
    let scenarios: Vec<_> = load::TLS_SCENARIOS
        .iter()
        .filter(|s| opts.wants(s.name))
        .collect();
    if scenarios.is_empty() {
        return Vec::new();
    }
    let cert = match TestCert::generate() {
        Ok(cert) => cert,
        Err(e) => {
            let why = format!("making the test certificate: {e}");
            return scenarios
                .iter()
                .flat_map(|s| {
                    TLS_SERVERS
                        .iter()
                        .map(|spec| Row::failed(s.name, spec.name, &why))
                })
                .collect();
        }
    };
    let context = Context { cert: Some(cert) };
    scenarios
        .into_iter()
        .flat_map(|s| {
            load_rows(
                program,
                s,
                &TLS_SERVERS,
                settings,
                &context,
                opts.load_threads,
            )
        })
        .collect()
}

/// Task round trips and one-way task throughput, eddy's task workers against tokio's
/// `spawn_blocking`, two task threads each, in this process.
fn task_rows(opts: &SuiteOptions, settings: &options::Settings) -> Vec<Row> {
    use crate::tasks::{round_trip, throughput, Runner, TaskFigures};
    type Measure = fn(Runner, usize, std::time::Duration) -> Result<TaskFigures, String>;
    let cases: [(&str, &'static str, Measure); 2] = [
        ("task_wait round trip", "round trips/s", round_trip),
        ("one-way tasks, 1,024 in flight", "tasks/s", throughput),
    ];
    let mut rows = Vec::new();
    for (scenario, unit, measure) in cases.into_iter().filter(|c| opts.wants(c.0)) {
        for runner in [Runner::Eddy, Runner::Tokio] {
            eprint!("{scenario} · {} … ", runner.name());
            let _ = io::stderr().flush();
            let result = measure(runner, 2, settings.duration);
            rows.push(match result {
                Ok(f) => {
                    eprintln!("{} {unit}", table::number(f.per_sec));
                    Row {
                        throughput: Some(rows::Figure::new(f.per_sec, unit)),
                        p50_us: f.p50_us,
                        p99_us: f.p99_us,
                        cost: Some(rows::Figure::new(f.cpu_us, "µs CPU/task")),
                        ..Row::new(scenario, runner.name())
                    }
                }
                Err(e) => {
                    eprintln!("FAILED: {e}");
                    Row::failed(scenario, runner.name(), &e)
                }
            });
        }
    }
    rows
}

/// One load scenario's rows: `settings.rounds` rounds, each running every one of `servers` in
/// turn on a fresh child (started with the scenario's framing; see [`round_order`]), then each
/// server's medians. A server that fails a round gets a failed row and sits out the later
/// rounds.
fn load_rows(
    program: &Path,
    scenario: &load::Scenario,
    servers: &[ServerSpec],
    settings: &Settings,
    context: &Context,
    load_threads: usize,
) -> Vec<Row> {
    let mut results: Vec<Result<Vec<load::LoadFigures>, String>> =
        servers.iter().map(|_| Ok(Vec::new())).collect();
    let tls_args = match (&context.cert, scenario.tls) {
        (Some(cert), true) => cert.serve_args(),
        _ => Vec::new(),
    };
    let mut framing: Vec<&str> = scenario.serve_args();
    framing.extend(tls_args.iter().map(String::as_str));
    let trust = context.cert.as_ref().map(TestCert::pem);
    for round in 1..=settings.rounds {
        let label = format!("{} (round {round}/{})", scenario.name, settings.rounds);
        for i in round_order(round, servers.len()) {
            let (spec, result) = (&servers[i], &mut results[i]);
            let Ok(rounds) = result else { continue };
            let measured = in_child(program, spec, &framing, &label, |child| {
                load::measure(child, scenario, settings, load_threads, trust)
            });
            match measured {
                Ok(figures) => {
                    let unit = if scenario.counts_handshakes() {
                        "handshake"
                    } else {
                        "packet"
                    };
                    eprintln!(
                        "{} {unit}s/s, {:.2} µs CPU/{unit}",
                        table::number(figures.report.packets_per_sec),
                        figures.cpu_us_per_packet()
                    );
                    rounds.push(figures);
                }
                Err(e) => {
                    eprintln!("FAILED: {e}");
                    *result = Err(e.to_string());
                }
            }
        }
    }
    servers
        .iter()
        .zip(results)
        .map(|(spec, result)| match result {
            Ok(rounds) => load::LoadFigures::row(&rounds, scenario.name, spec.name),
            Err(e) => Row::failed(scenario.name, spec.name, &e),
        })
        .collect()
}

/// The order the servers run in during round `round` (from 1): as listed in odd rounds,
/// reversed in even ones. This machine's speed drifts over seconds, so a fixed order would
/// hand the same server the same part of every round; alternating, no server is always first.
fn round_order(round: usize, servers: usize) -> Vec<usize> {
    let order = 0..servers;
    if round.is_multiple_of(2) {
        order.rev().collect()
    } else {
        order.collect()
    }
}

/// Starts `spec` with `framing` (its `--framing …` arguments), runs `measure` against it and
/// kills it, announcing it on stderr.
fn in_child<T>(
    program: &Path,
    spec: &ServerSpec,
    framing: &[&str],
    label: &str,
    measure: impl FnOnce(&ServerChild) -> Result<T, Failure>,
) -> Result<T, Failure> {
    eprint!("{label} · {} … ", spec.name);
    let _ = io::stderr().flush();
    let child = servers::spawn_with(program, spec, framing)?;
    let measured = measure(&child);
    child.kill()?;
    measured
}

/// Runs `measure` against a fresh child of `spec` and reports on stderr. Any error becomes a
/// failed row.
fn run_one(
    program: &Path,
    spec: &ServerSpec,
    scenario: &str,
    measure: impl FnOnce(&ServerChild) -> Result<Row, Failure>,
) -> Row {
    match in_child(program, spec, &["--framing", "length"], scenario, measure) {
        Ok(row) => {
            let show = |f: Option<rows::Figure>| {
                f.map(|f| format!("{} {}", table::number(f.value), f.unit))
            };
            let figures: Vec<String> = [show(row.throughput), show(row.cost)]
                .into_iter()
                .flatten()
                .collect();
            eprintln!("{}", figures.join(", "));
            row
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            Row::failed(scenario, spec.name, &e.to_string())
        }
    }
}

/// Fails unless the file limit leaves room for `conns` connections.
fn check_nofile(nofile: &io::Result<u64>, conns: usize) -> Result<(), Failure> {
    let need = conns as u64 + FD_MARGIN;
    match nofile {
        Ok(limit) if *limit >= need => Ok(()),
        Ok(limit) => Err(format!(
            "RLIMIT_NOFILE is {limit}, {need} needed for {conns} connections \
             (raise the hard limit, e.g. `ulimit -Hn {need}` as root)"
        )
        .into()),
        Err(e) => Err(format!("raising RLIMIT_NOFILE failed: {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::round_order;

    #[test]
    fn rounds_alternate_the_order_of_the_servers() {
        assert_eq!(round_order(1, 4), [0, 1, 2, 3]);
        assert_eq!(round_order(2, 4), [3, 2, 1, 0]);
        assert_eq!(round_order(3, 4), [0, 1, 2, 3]);
        assert_eq!(round_order(1, 0), Vec::<usize>::new());
    }
}
