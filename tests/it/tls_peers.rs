//! The `echo` example over TLS against independent clients: `openssl s_client` (a round
//! trip, ALPN, renegotiation refused) and Python's `ssl` module (SNI, mutual TLS accepted and
//! refused).

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, Command, Stdio},
};

use crossbeam_channel::Receiver;

use crate::{pki::Ca, util::*};

/// The certificate path in a `listening on ADDR (TLS, certificate PATH)` line.
fn certificate_of(line: &str) -> String {
    line.split("certificate ")
        .nth(1)
        .and_then(|rest| rest.trim().strip_suffix(')'))
        .unwrap_or_else(|| panic!("no certificate in {line:?}"))
        .to_string()
}

fn need(command: &str, args: &[&str], install: &str) {
    let found = Command::new(command)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "`{command}` is missing: install it with `{install}`");
}

/// `openssl s_client` connected to `addr`, its output lines on a channel.
struct SClient {
    child: Child,
    lines: Receiver<String>,
}

impl SClient {
    fn start(addr: std::net::SocketAddr, args: &[&str]) -> SClient {
        need("openssl", &["version"], "apt-get install openssl");
        let mut child = Command::new("openssl")
            .arg("s_client")
            .args(["-connect", &addr.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        let (tx, lines) = crossbeam_channel::unbounded();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        SClient { child, lines }
    }

    fn send(&mut self, line: &str) {
        self.try_send(line).expect("s_client takes the line");
    }

    /// Send a line to a client that may have exited already.
    fn try_send(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()
    }

    /// Wait for a line matching `pred`; everything seen on the way, if it never comes.
    fn expect(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "s_client never printed {what}; it printed:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Wait until it exits (the connection ended): its output closes when it does.
    fn ended(mut self) -> bool {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return self.child.wait().is_ok();
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn openssl_s_client_round_trips_chooses_alpn_and_renegotiation_is_refused() {
    let server = Example::start(
        "echo",
        &[
            "--codec",
            "line",
            "--tls-self-signed",
            "--tls-alpn",
            "eddy/1,http/1.1",
        ],
    );
    let cert = certificate_of(&server.line);
    let mut client = SClient::start(
        server.addr,
        &[
            "-CAfile",
            &cert,
            "-servername",
            "localhost",
            "-alpn",
            "http/1.1,eddy/1",
            "-verify_return_error",
        ],
    );
    client.expect("ALPN", |l| l.contains("ALPN protocol: eddy/1"));
    client.expect("verification", |l| l.contains("Verify return code: 0 (ok)"));
    client.send("hello from openssl");
    client.expect("the echo", |l| l == "hello from openssl");
    drop(client);

    // TLS 1.2 renegotiation: refused with a no_renegotiation warning (OpenSSL then gives
    // up on the session), a second attempt ends it on the server's side; the server goes on
    // serving others.
    let mut renegotiating = SClient::start(
        server.addr,
        &["-CAfile", &cert, "-servername", "localhost", "-tls1_2"],
    );
    renegotiating.expect("TLS 1.2", |l| l.contains("TLSv1.2"));
    renegotiating.send("before");
    renegotiating.expect("the echo", |l| l == "before");
    renegotiating.send("R");
    let _ = renegotiating.try_send("R");
    assert!(renegotiating.ended(), "renegotiation ends the session");
    let mut after = SClient::start(server.addr, &["-CAfile", &cert, "-quiet"]);
    after.send("still serving");
    after.expect("the echo", |l| l == "still serving");
    assert_eq!(server.signal(libc::SIGTERM), 0);
}

/// The echo example on a line codec over TLS with this certificate and key, and `extra` flags.
fn tls_echo(cert: &Path, key: &Path, extra: &[&str]) -> Example {
    let mut args = vec![
        "--codec",
        "line",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Example::start("echo", &args)
}

/// Run `tests/peers/tls_client.py` against `port`; its JSON answer.
fn python_tls(port: u16, ca: &Path, args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/tls_client.py");
    let output = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--ca"])
        .arg(ca)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

#[test]
fn python_ssl_gets_the_sni_certificate_and_mutual_tls_is_enforced() {
    let ca = Ca::new("eddy test CA");
    let dir = std::env::temp_dir().join(format!("eddy-pki-{}-peers", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let (cert, key) = ca.server(&["localhost"]).write("peers-default");
    let (api_cert, api_key) = ca.server(&["api.localhost"]).write("peers-api");
    let (alice_cert, alice_key) = ca.client("alice", "Example Org").write("peers-alice");
    let sni = format!("api.localhost:{}:{}", api_cert.display(), api_key.display());
    let server = tls_echo(
        &cert,
        &key,
        &[
            "--tls-sni",
            &sni,
            "--tls-client-ca",
            ca_path.to_str().unwrap(),
        ],
    );
    let port = server.addr.port();
    let alice = [
        "--cert",
        alice_cert.to_str().unwrap(),
        "--key",
        alice_key.to_str().unwrap(),
    ];
    for (name, cn) in [
        ("localhost", "localhost"),
        ("api.localhost", "api.localhost"),
    ] {
        let mut args = vec!["--servername", name, "--send", "hi from python"];
        args.extend(alice);
        let answer = python_tls(port, &ca_path, &args);
        assert_eq!(answer["subject_cn"], cn, "{answer}");
        assert_eq!(answer["echo"], "hi from python", "{answer}");
    }
    let refused = python_tls(port, &ca_path, &["--send", "no certificate"]);
    assert!(
        refused["error"].is_string(),
        "refused without a client certificate: {refused}"
    );
    assert_eq!(server.signal(libc::SIGTERM), 0);
}

#[test]
fn sigusr1_reloads_the_echo_examples_certificate_for_new_connections() {
    let ca = Ca::new("eddy test CA");
    let (first, second) = (ca.server(&["localhost"]), ca.server(&["localhost"]));
    let (cert, key) = first.write("sigusr1");
    let server = tls_echo(&cert, &key, &[]);
    let config = ca.client_config(&[], None);
    let served = || {
        let mut client = crate::pki::tls_connect(server.addr, config.clone(), "localhost").unwrap();
        client.write_all(b"ping\n").unwrap();
        let mut echo = [0; 5];
        std::io::Read::read_exact(&mut client, &mut echo).unwrap();
        assert_eq!(&echo, b"ping\n");
        client.conn.peer_certificates().unwrap()[0].to_vec()
    };
    let mut open = crate::pki::tls_connect(server.addr, config.clone(), "localhost").unwrap();
    assert_eq!(served(), first.der);
    std::fs::write(&cert, &second.cert).unwrap();
    std::fs::write(&key, &second.key).unwrap();
    server.notify(libc::SIGUSR1);
    wait_until("new connections get the reloaded certificate", || {
        served() == second.der
    });
    // The connection opened before the reload is still served.
    open.write_all(b"still open\n").unwrap();
    let mut echo = [0; 11];
    std::io::Read::read_exact(&mut open, &mut echo).unwrap();
    assert_eq!(&echo, b"still open\n");
    assert_eq!(server.signal(libc::SIGTERM), 0);
}
