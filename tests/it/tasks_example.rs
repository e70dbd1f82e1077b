//! The tasks example's contract: fib with task_co, sleep with task_wait, async with a
//! per-call callback, panic, /stats, flags, SIGTERM.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
};

use crate::util::*;

struct Line {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Line {
    fn connect(example: &Example) -> Line {
        let stream = connect(example.addr);
        Line {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn next(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line in time");
        line.trim_end_matches('\n').to_string()
    }

    fn ask(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        self.next()
    }
}

#[test]
fn every_command_answers_as_documented() {
    let example = Example::start("tasks", &["--workers", "2", "--task-workers", "3"]);
    let mut client = Line::connect(&example);
    assert_eq!(
        client.ask("fib 10 20 90 0 1"),
        "fib 55 6765 2880067194370816120 0 1"
    );
    // 64 tasks at once, answered in order: 90, 89, … 27.
    let many: Vec<String> = (27..=90).rev().map(|n: u32| n.to_string()).collect();
    let mut fibs = vec![0u64, 1];
    while fibs.len() <= 90 {
        fibs.push(fibs[fibs.len() - 1] + fibs[fibs.len() - 2]);
    }
    let expected: Vec<String> = (27..=90).rev().map(|n| fibs[n].to_string()).collect();
    assert_eq!(
        client.ask(&format!("fib {}", many.join(" "))),
        format!("fib {}", expected.join(" "))
    );
    assert!(client.ask("fib 91").starts_with("error: "));
    let too_many: Vec<&str> = vec!["1"; 65];
    assert!(client
        .ask(&format!("fib {}", too_many.join(" ")))
        .starts_with("error: "));
    assert_eq!(client.ask("sleep 10 5000"), "done 10");
    assert_eq!(client.ask("sleep 300 20"), "timeout");
    let queued = client.ask("async 30");
    let id = queued
        .strip_prefix("queued ")
        .unwrap_or_else(|| panic!("{queued}"));
    assert_eq!(client.next(), format!("finished {id} 832040"));
    assert_eq!(client.ask("panic"), "task failed: panic requested");
    // Still serving after the panic.
    assert_eq!(client.ask("fib 12"), "fib 144");
    let stats: serde_json::Value = serde_json::from_str(&client.ask("/stats")).unwrap();
    assert_eq!(stats["task_worker_num"], 3);
    assert_eq!(stats["task_failed"], 1);
    for field in [
        "tasking_num",
        "task_queue_num",
        "task_idle_worker_num",
        "task_completed",
        "task_late",
    ] {
        assert!(stats[field].is_u64(), "{field} in {stats}");
    }
    assert!(client.ask("bogus").starts_with("error: "));
    assert_eq!(example.signal(libc::SIGTERM), 0);
}

#[test]
fn bad_flags_fail_with_a_message() {
    for args in [
        &["--task-workers", "0"][..],
        &["--workers", "x"],
        &["--bogus"],
    ] {
        let out = std::process::Command::new(example_binary("tasks"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("tasks:"),
            "{args:?}"
        );
    }
}

#[test]
fn a_second_sigint_exits_at_once() {
    let example = Example::start("tasks", &[]);
    let mut client = Line::connect(&example);
    // A worker busy for 5 s: the graceful shutdown would wait up to max_wait_time (3 s).
    client.writer.write_all(b"sleep 5000 6000\n").unwrap();
    // Ask /stats on fresh connections until one lands on a free worker and sees the task
    // running (a probe that lands on the busy worker gets no answer in 200 ms: dropped).
    wait_until("the task to run", || {
        let probe = connect(example.addr);
        probe
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut probe = Line {
            reader: BufReader::new(probe.try_clone().unwrap()),
            writer: probe,
        };
        probe.writer.write_all(b"/stats\n").unwrap();
        let mut line = String::new();
        probe.reader.read_line(&mut line).is_ok()
            && serde_json::from_str::<serde_json::Value>(&line)
                .is_ok_and(|stats| stats["tasking_num"] == 1)
    });
    example.notify(libc::SIGINT);
    // Once accepting has stopped, the shutdown is under way.
    wait_until("the listener to close", || {
        TcpStream::connect(example.addr).is_err()
    });
    let begun = std::time::Instant::now();
    assert_eq!(example.signal(libc::SIGINT), 130);
    assert!(begun.elapsed() < std::time::Duration::from_secs(2));
}
