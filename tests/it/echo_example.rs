//! The echo example's contract: its flags, its `listening on ADDR` line, its framings, its
//! packet limit, and a graceful exit with code 0 on SIGTERM and SIGINT.

use std::{io::Write, process::Command};

use crate::util::*;

#[test]
fn length_framing_by_default_and_sigterm_exits_zero() {
    let echo = Example::start("echo", &[]);
    let mut client = connect(echo.addr);
    let mut stream = frame(b"hello");
    stream.extend(frame(&[9u8; 5000]));
    write_all(&mut client, &stream);
    assert_eq!(read_n(&mut client, stream.len()), stream);
    assert_eq!(echo.signal(libc::SIGTERM), 0);
}

#[test]
fn eof_line_and_raw_codecs() {
    for (codec, data) in [
        ("eof", &b"one\r\ntwo\r\n"[..]),
        ("line", b"one\ntwo\n"),
        ("raw", b"any bytes at all"),
    ] {
        let echo = Example::start("echo", &["--codec", codec]);
        let mut client = connect(echo.addr);
        write_all(&mut client, data);
        assert_eq!(read_n(&mut client, data.len()), data, "{codec}");
        assert_eq!(echo.signal(libc::SIGINT), 0, "SIGINT is graceful too");
    }
}

#[test]
fn length_type_offsets_and_delimiters() {
    let cases: [(&[&str], &[u8]); 5] = [
        // The length counts the whole packet, little-endian u16.
        (
            &["--length-type", "u16le", "--body-offset", "0"],
            b"\x07\x00hello",
        ),
        // Two bytes before a signed 8-bit body length.
        (
            &[
                "--length-type",
                "i8",
                "--length-offset",
                "2",
                "--body-offset",
                "3",
            ],
            b"AB\x02hiAB\x00",
        ),
        (
            &["--length-type", "u64be", "--body-offset", "8"],
            b"\0\0\0\0\0\0\0\x02ok",
        ),
        (&["--codec", "eof", "--eof", "||"], b"one||two||"),
        (&["--codec", "eof-check", "--eof", "\\r\\n"], b"a\r\nb\r\n"),
    ];
    for (args, data) in cases {
        let echo = Example::start("echo", args);
        let mut client = connect(echo.addr);
        write_all(&mut client, data);
        assert_eq!(read_n(&mut client, data.len()), data, "{args:?}");
    }
}

#[test]
fn max_packet_closes_only_the_offender() {
    let echo = Example::start(
        "echo",
        &[
            "--max-packet",
            "100",
            "--dispatch",
            "round-robin",
            "--workers",
            "3",
        ],
    );
    let mut good = connect(echo.addr);
    let mut bad = connect(echo.addr);
    bad.write_all(&frame(&[0u8; 200])).unwrap();
    let (echoed, _) = read_to_close(&mut bad);
    assert!(echoed.is_empty());
    let packet = frame(b"fine");
    write_all(&mut good, &packet);
    assert_eq!(read_n(&mut good, packet.len()), packet);
}

#[test]
fn every_dispatch_mode_echoes() {
    for mode in ["fd", "round-robin", "idle", "ip", "uid", "reactor"] {
        let echo = Example::start(
            "echo",
            &["--dispatch", mode, "--workers", "2", "--reactors", "2"],
        );
        let mut client = connect(echo.addr);
        let packet = frame(mode.as_bytes());
        write_all(&mut client, &packet);
        assert_eq!(read_n(&mut client, packet.len()), packet, "{mode}");
    }
}

#[test]
fn bad_flags_fail_with_a_message() {
    for args in [
        &["--codec", "morse"][..],
        &["--workers", "0"],
        &["--workers", "many"],
        &["--dispatch", "random"],
        &["--listen", "nowhere"],
        &["--bogus"],
        &["--length-type", "u24be"],
        &["--length-offset", "9000"],
        &["--codec", "eof", "--eof", ""],
        &["--codec", "eof", "--eof", "123456789"],
        &["--eof", "\\q"],
    ] {
        let out = Command::new(example_binary("echo"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("echo:"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn out_of_file_descriptors_pauses_accepting_then_recovers() {
    // About 15 descriptors go to the process itself; the rest can hold connections.
    let echo = Example::start_with("echo", &["--reactors", "1", "--workers", "1"], Some(40));
    let mut clients: Vec<_> = (0..60).map(|_| connect(echo.addr)).collect();
    // The first ones are accepted and served.
    for client in clients.iter_mut().take(5) {
        let packet = frame(b"early");
        write_all(client, &packet);
        assert_eq!(read_n(client, packet.len()), packet);
    }
    // The last one waits in the listen queue while the server is out of descriptors...
    let packet = frame(b"late");
    let mut last = clients.pop().unwrap();
    write_all(&mut last, &packet);
    // ...until others leave; then it is accepted and answered, nothing lost.
    clients.truncate(10);
    assert_eq!(read_n(&mut last, packet.len()), packet);
    assert_eq!(echo.signal(libc::SIGTERM), 0);
}
