//! Command line and run lengths of the echo benchmark suite.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Usage text of the `echo` bench.
pub const USAGE: &str = "\
usage: cargo bench --bench echo [-- [--quick] [--json FILE] [--load-threads N] [--filter TEXT]]

  --quick           3 rounds of 1 s per server and scenario, after 0.3 s of
                    warm-up each (full: 5 rounds of 2 s after 1 s)
  --json FILE       also write every figure to FILE as JSON
  --load-threads N  load-generator threads (default 1)
  --filter TEXT     only the rows whose scenario name contains TEXT (e.g. `tls`)

Runs every server as a child process (this binary re-executed with
`--serve ...`), loads it in-process with eddy-load and prints one table.
Without `--bench` (which `cargo bench` passes; `cargo test --benches` does
not) it runs a smoke check with tiny runs instead.
";

/// How long and how big the runs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The reference run: 5 interleaved rounds of 2 s per server and scenario.
    Full,
    /// `--quick`: 3 rounds of 1 s, same shape.
    Quick,
    /// Not run by `cargo bench`: a few seconds in all, to check it works.
    Smoke,
}

/// Run lengths and sizes for a [`Profile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Unmeasured load before each measured run.
    #[serde(rename = "warmup_secs", serialize_with = "secs")]
    pub warmup: Duration,
    /// Measured load per round, scenario and server (and per task row).
    #[serde(rename = "duration_secs", serialize_with = "secs")]
    pub duration: Duration,
    /// Rounds of each load scenario: every round runs each server once, in turn, and the table
    /// shows each figure's median over the rounds, so a slow spell of a shared machine hits
    /// every server alike instead of one.
    pub rounds: usize,
    /// Idle connections for the RSS-per-connection row.
    pub idle_conns: usize,
    /// Connections for the accept-rate row.
    pub accepts: usize,
    /// Client threads for the accept-rate row.
    pub accept_threads: usize,
    /// Window of the idle-CPU row.
    #[serde(rename = "idle_window_secs", serialize_with = "secs")]
    pub idle_window: Duration,
}

fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Profile {
    /// The settings of this profile.
    pub fn settings(self) -> Settings {
        let full = Settings {
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(2),
            rounds: 5,
            idle_conns: 10_000,
            accepts: 5_000,
            accept_threads: 4,
            idle_window: Duration::from_secs(1),
        };
        match self {
            Profile::Full => full,
            Profile::Quick => Settings {
                warmup: Duration::from_millis(300),
                duration: Duration::from_secs(1),
                rounds: 3,
                ..full
            },
            Profile::Smoke => Settings {
                warmup: Duration::from_millis(50),
                duration: Duration::from_millis(200),
                rounds: 2,
                idle_conns: 200,
                accepts: 200,
                accept_threads: 2,
                idle_window: Duration::from_millis(200),
            },
        }
    }
}

/// Parsed options of the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteOptions {
    /// Run lengths.
    pub profile: Profile,
    /// Where to write the JSON report, if anywhere.
    pub json: Option<PathBuf>,
    /// Load-generator threads.
    pub load_threads: usize,
    /// Only the scenarios whose name contains this text.
    pub filter: Option<String>,
}

impl SuiteOptions {
    /// Whether the scenario called `name` is to run.
    pub fn wants(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

/// Parses the suite's arguments (without the program name). `Err` carries
/// the message to print; for `--help` it is [`USAGE`] itself.
pub fn parse_suite_args<I>(args: I) -> Result<SuiteOptions, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    match parse_flags(lexopt::Parser::from_args(args)) {
        Ok(Some(opts)) if opts.load_threads == 0 => Err("--load-threads must be at least 1".into()),
        Ok(Some(opts)) => Ok(opts),
        Ok(None) => Err(USAGE.into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The options, or `None` for `--help`.
fn parse_flags(mut parser: lexopt::Parser) -> Result<Option<SuiteOptions>, lexopt::Error> {
    use lexopt::prelude::*;

    let (mut bench, mut quick) = (false, false);
    let mut opts = SuiteOptions {
        profile: Profile::Smoke,
        json: None,
        load_threads: 1,
        filter: None,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("bench") => bench = true,
            Long("quick") => quick = true,
            Long("json") => opts.json = Some(parser.value()?.into()),
            Long("load-threads") => opts.load_threads = parser.value()?.parse()?,
            Long("filter") => opts.filter = Some(parser.value()?.string()?),
            Long("help") | Short('h') => return Ok(None),
            _ => return Err(arg.unexpected()),
        }
    }
    opts.profile = match (bench, quick) {
        (false, _) => Profile::Smoke,
        (true, true) => Profile::Quick,
        (true, false) => Profile::Full,
    };
    Ok(Some(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_follow_flags() {
        let p = |args: &[&str]| parse_suite_args(args).map(|o| o.profile);
        assert_eq!(p(&["--bench"]), Ok(Profile::Full));
        assert_eq!(p(&["--quick", "--bench"]), Ok(Profile::Quick));
        assert_eq!(p(&[]), Ok(Profile::Smoke));
        assert_eq!(p(&["--help"]), Err(USAGE.to_owned()));
        assert!(p(&["--load-threads", "0"]).is_err());
        assert!(p(&["extra"]).is_err());
    }

    #[test]
    fn reads_json_path_and_threads() {
        let o = parse_suite_args(["--json", "out.json", "--load-threads", "2", "--bench"])
            .expect("parses");
        assert_eq!(o.json, Some(PathBuf::from("out.json")));
        assert_eq!(o.load_threads, 2);
    }

    #[test]
    fn filter_picks_scenarios() {
        let o = parse_suite_args(["--bench", "--filter", "tls"]).expect("parses");
        assert!(o.wants("tls ping-pong 50 conn × 64 B"));
        assert!(!o.wants("ping-pong 50 conn × 64 B"));
        let all = parse_suite_args(["--bench"]).expect("parses");
        assert!(all.wants("anything"));
    }

    #[test]
    fn quick_is_short_enough() {
        let s = Profile::Quick.settings();
        assert_eq!((s.duration, s.rounds), (Duration::from_secs(1), 3));
        assert_eq!(s.idle_conns, 10_000);
    }
}
