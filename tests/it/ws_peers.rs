//! The WebSocket examples against an independent client library: Python's `websockets`
//! (with permessage-deflate, which tungstenite lacks).

use std::process::{Command, Stdio};

use crate::util::*;

/// Run the Python client against `ws_echo` started with `args`, in `mode`.
fn python_client(args: &[&str], mode: &str) {
    let server = Example::start("ws_echo", args);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_client.py");
    let probe = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .expect("python3 runs");
    assert!(
        probe.success(),
        "the Python `websockets` library is missing: install it with `pip install websockets`"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(format!("ws://{}/", server.addr))
        .arg(mode)
        .stdin(Stdio::null())
        .output()
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let checks: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(checks.len(), 9, "{stdout}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{stdout}");
}

#[test]
fn python_websockets_with_permessage_deflate() {
    python_client(&[], "deflate");
}

#[test]
fn python_websockets_without_deflate_when_the_server_declines_it() {
    python_client(&["--no-deflate"], "deflate-declined");
}
