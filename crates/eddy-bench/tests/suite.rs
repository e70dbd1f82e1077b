//! The benchmark suite end to end, in its smoke profile, with the
//! `eddy-baseline` binary as the server program.

use std::path::Path;

use eddy_bench::suite::options::{Profile, SuiteOptions};
use eddy_bench::suite::run_suite;

#[test]
fn smoke_suite_fills_every_row() {
    let opts = SuiteOptions {
        profile: Profile::Smoke,
        json: None,
        load_threads: 1,
        filter: None,
    };
    let report = run_suite(Path::new(env!("CARGO_BIN_EXE_eddy-baseline")), &opts);
    let table = report.render();
    assert!(!report.failed(), "{table}");
    // 4 scenarios and 3 connection rows for 4 servers, 3 WebSocket scenarios for 3 servers
    // and the deflate one for 2 (and a note for tokio-tungstenite), the broadcast pointer,
    // 2 UDP scenarios for 3 servers, 5 TLS scenarios for 3 servers, then 2 task scenarios
    // for eddy and tokio.
    assert_eq!(
        report.rows.len(),
        7 * 4 + 3 * 3 + 3 + 2 * 3 + 5 * 3 + 1 + 2 * 2,
        "{table}"
    );
    for row in report.rows.iter().filter(|r| r.note.is_none()) {
        assert!(row.cost.is_some(), "{table}");
        // The deflate scenario has no baseline (tokio-tungstenite has no deflate).
        if row.server.starts_with("eddy") && row.compare {
            let ratios = row.ratios.expect("eddy rows have ratios");
            let baseline = !row.scenario.starts_with("ws+deflate");
            assert_eq!(ratios.cost_vs_tokio.is_some(), baseline, "{table}");
        }
    }
    assert!(table.contains("task_wait round trip"), "{table}");
    let tls: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.scenario.starts_with("tls "))
        .collect();
    assert_eq!(tls.len(), 15, "{table}");
    assert_eq!(tls.iter().filter(|r| r.server == "tokio-rustls").count(), 5);
    assert!(tls
        .iter()
        .filter(|r| r.server.starts_with("eddy"))
        .all(|r| r.ratios.and_then(|x| x.cost_vs_tokio).is_some()));
    let handshakes: Vec<_> = tls
        .iter()
        .filter(|r| r.scenario.contains("handshakes"))
        .collect();
    assert_eq!(handshakes.len(), 3, "{table}");
    assert!(handshakes.iter().all(|r| r
        .throughput
        .is_some_and(|f| f.unit == "handshakes/s" && f.value > 0.0)));
    assert!(table.contains("tls: TLS 1.3"), "{table}");
    let ws: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.scenario.starts_with("ws "))
        .collect();
    assert_eq!(ws.len(), 9, "{table}");
    assert!(ws
        .iter()
        .all(|r| r.ratios.is_some() || !r.server.starts_with("eddy")));
    assert!(ws
        .iter()
        .filter(|r| r.server.starts_with("eddy"))
        .all(|r| r.ratios.and_then(|x| x.throughput_vs_tokio).is_some()));
    let udp: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.scenario.starts_with("udp "))
        .collect();
    assert_eq!(udp.len(), 6, "{table}");
    assert_eq!(udp.iter().filter(|r| r.server == "tokio").count(), 2);
    assert!(udp
        .iter()
        .filter(|r| r.server.starts_with("eddy"))
        .all(|r| r.ratios.and_then(|x| x.cost_vs_tokio).is_some()));
    assert!(udp.iter().all(|r| r.details.get("lost").is_some()));
    assert!(table.contains("udp ping-pong 50 × 64 B"), "{table}");
    assert!(table.contains("udp: connected UDP sockets"), "{table}");
    let deflate: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.scenario.starts_with("ws+deflate"))
        .collect();
    assert_eq!(deflate.len(), 3, "{table}");
    let fraction = deflate[0].details["wire_fraction"]
        .as_f64()
        .expect("measured");
    assert!(fraction > 0.1 && fraction < 0.8, "{table}");
    assert!(table.contains("n/a: tokio-tungstenite has no permessage-deflate"));
    assert!(table.contains("ws+deflate: JSON-like text"), "{table}");
    let json = std::env::temp_dir().join(format!("eddy-bench-smoke-{}.json", std::process::id()));
    report.write_json(&json).expect("json");
    let text = std::fs::read_to_string(&json).expect("read json");
    std::fs::remove_file(&json).expect("remove json");
    assert!(text.contains("\"cpu_us_per_packet\""));
    assert!(text.contains("\"duration_secs\": 0.2"));
}

#[test]
fn a_server_that_cannot_start_fails_its_rows_only() {
    let opts = SuiteOptions {
        profile: Profile::Smoke,
        json: None,
        load_threads: 1,
        filter: None,
    };
    let report = run_suite(Path::new("/bin/true"), &opts);
    assert!(report.failed());
    let failed = report.rows.iter().filter(|r| r.failed).count();
    // Every measured row but the deflate scenario's tokio-tungstenite note.
    assert_eq!(failed, 7 * 4 + 3 * 3 + 2 + 2 * 3 + 5 * 3);
    assert!(report.render().contains("failed to start"));
}

#[test]
fn a_filter_runs_only_the_scenarios_it_names() {
    let opts = SuiteOptions {
        profile: Profile::Smoke,
        json: None,
        load_threads: 1,
        filter: Some("tls ping-pong 50 conn × 64 B".into()),
    };
    let report = run_suite(Path::new("/bin/true"), &opts);
    let servers: Vec<&str> = report.rows.iter().map(|r| r.server.as_str()).collect();
    assert_eq!(servers, ["eddy fd", "eddy reactor", "tokio-rustls"]);
    assert!(report.rows.iter().all(|r| r.failed));
}
