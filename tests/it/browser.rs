//! The ws_chat example in a real browser: Debian's headless `chromium`, driven over the Chrome
//! DevTools Protocol (CDP) with a small synchronous client on tungstenite. Two pages (alice and
//! bob) load `GET /`, open their WebSockets, log in, and talk; every check reads the page's DOM.
//!
//! The browser is `EDDY_CHROMIUM`, else `chromium` or `chromium-browser` on PATH. Without one the
//! test fails: install Debian's `chromium` package (`.ci/run` does).

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    net::TcpStream,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::util::Example;

/// How long the browser may take to start, and any one CDP command to answer.
const BROWSER_WAIT: Duration = Duration::from_secs(60);

/// How long a page may take (JS side, in milliseconds) to show a line or open its socket.
const PAGE_WAIT_MS: u64 = 20_000;

/// How many of the browser's last stderr lines a failure shows.
const STDERR_TAIL: usize = 40;

/// The browser: `EDDY_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn find_chromium() -> PathBuf {
    const INSTALL: &str = "install Debian's `chromium` package (`apt-get install chromium`), \
                           or set EDDY_CHROMIUM to a Chromium binary";
    if let Some(path) = std::env::var_os("EDDY_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "EDDY_CHROMIUM={} is not a file: {INSTALL}",
            path.display()
        );
        return path;
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|path| is_executable(path))
        .unwrap_or_else(|| panic!("no `chromium` or `chromium-browser` on PATH: {INSTALL}"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A fresh, empty directory under the system temp dir.
fn fresh_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "eddy-{what}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    dir
}

/// Headless Chromium in its own process group; the whole group is killed on drop and its
/// profile directory removed.
struct Browser {
    child: Child,
    profile: PathBuf,
    /// The browser-wide DevTools WebSocket URL.
    devtools: String,
    /// The last lines of the browser's stderr, for failure messages.
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Browser {
    /// Start the browser with these flags besides the test's own.
    fn launch(extra: &[&str]) -> Browser {
        let binary = find_chromium();
        let profile = fresh_dir("chromium-profile");
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .args(["--no-first-run", "--no-default-browser-check", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so drop can kill the renderers and helpers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| {
                let _ = std::fs::remove_dir_all(&profile);
                panic!(
                    "start {}: {err} (install Debian's `chromium` package: `apt-get install chromium`)",
                    binary.display()
                )
            });
        // Drain both pipes for the browser's whole life, so it never blocks on a full pipe.
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let reader = BufReader::new(child.stderr.take().unwrap());
        let tail = stderr.clone();
        std::thread::spawn(move || {
            for line in reader.split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.try_send(url.trim().to_string());
                }
                let mut tail = tail.lock().unwrap();
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut browser = Browser {
            child,
            profile,
            devtools: String::new(),
            stderr,
        };
        browser.devtools = match rx.recv_timeout(BROWSER_WAIT) {
            Ok(url) => url,
            Err(err) => {
                let status = browser.child.try_wait().ok().flatten();
                panic!(
                    "{} printed no `DevTools listening on ws://...` line ({err}; exit status {status:?}); \
                     its stderr ended:\n{}",
                    binary.display(),
                    browser.stderr_tail()
                )
            }
        };
        browser
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: signals the process group of our own child (its pid is the group id).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A synchronous CDP client on the browser's WebSocket: one command at a time, each with an id;
/// events (messages without an id) are skipped.
struct Cdp {
    socket: WebSocket<TcpStream>,
    /// The same socket, to set read timeouts while tungstenite owns the stream.
    tcp: TcpStream,
    next_id: u64,
}

/// A page the client is attached to with a flat session.
struct Tab {
    name: &'static str,
    session: String,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let authority = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("not a ws:// DevTools URL: {url}"));
        let tcp = TcpStream::connect(authority)
            .unwrap_or_else(|err| panic!("connect to DevTools at {authority}: {err}"));
        tcp.set_read_timeout(Some(BROWSER_WAIT)).unwrap();
        tcp.set_write_timeout(Some(BROWSER_WAIT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let (socket, _) = tungstenite::client::client(url, tcp.try_clone().unwrap())
            .unwrap_or_else(|err| panic!("DevTools WebSocket handshake with {url}: {err}"));
        Cdp {
            socket,
            tcp,
            next_id: 0,
        }
    }

    /// Send `method` (to `session`, or to the browser) and wait for its answer: the `result`,
    /// or the protocol error as text. Panics if the browser does not answer in time.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .unwrap_or_else(|err| panic!("send {method}: {err}"));
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no answer to {method} within {BROWSER_WAIT:?}"
            );
            self.tcp.set_read_timeout(Some(left)).unwrap();
            let message = match self.socket.read() {
                Ok(message) => message,
                // A read with a timeout returns EINTR when a signal lands, even under
                // SA_RESTART (other tests signal this process): read again.
                Err(tungstenite::Error::Io(err))
                    if err.kind() == std::io::ErrorKind::Interrupted =>
                {
                    continue;
                }
                Err(err) => panic!("no answer to {method} within {BROWSER_WAIT:?}: {err}"),
            };
            let text = match &message {
                Message::Text(text) => text.as_str(),
                Message::Close(frame) => {
                    panic!("DevTools closed the socket during {method}: {frame:?}")
                }
                _ => continue,
            };
            let reply: Value = serde_json::from_str(text)
                .unwrap_or_else(|err| panic!("DevTools sent bad JSON ({err}): {text}"));
            if reply["id"].as_u64() != Some(id) {
                continue; // an event
            }
            return match reply.get("error") {
                Some(error) => Err(format!("{method}: {error}")),
                None => Ok(reply["result"].clone()),
            };
        }
    }

    /// Open `url` in a new page (in a new window) and attach to it with a flat session.
    fn open(&mut self, name: &'static str, url: &str) -> Tab {
        // Its own window, so it is visible: no hidden tab with throttled timers.
        let target = self
            .call(
                None,
                "Target.createTarget",
                json!({ "url": url, "newWindow": true }),
            )
            .unwrap_or_else(|err| panic!("open {name}'s page: {err}"));
        let target = target["targetId"].as_str().expect("a targetId").to_string();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .unwrap_or_else(|err| panic!("attach to {name}'s page: {err}"));
        let session = attached["sessionId"]
            .as_str()
            .expect("a sessionId")
            .to_string();
        Tab { name, session }
    }

    /// Evaluate `expression` in the page, awaiting a promise; the value, or what went wrong
    /// (a rejection's message, or a protocol error).
    fn eval(&mut self, tab: &Tab, expression: &str) -> Result<Value, String> {
        let result = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        )?;
        if let Some(details) = result.get("exceptionDetails") {
            let description = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("an exception");
            // The message, without the stack.
            return Err(description.lines().next().unwrap_or_default().to_string());
        }
        Ok(result["result"]["value"].clone())
    }

    /// The page's chat lines (`#log li`), for failure messages; best effort.
    fn lines(&mut self, tab: &Tab) -> String {
        match self.eval(tab, LINES_JS) {
            Ok(lines) => lines.to_string(),
            Err(err) => format!("(unreadable: {err})"),
        }
    }
}

/// The chat lines in the page's DOM.
const LINES_JS: &str = "Array.from(document.querySelectorAll('#log li'), (li) => li.textContent)";

/// A promise that resolves (with the page's title) once the page at `url` has its chat socket
/// open, polling in the page; it rejects after `PAGE_WAIT_MS`.
fn ready_js(url: &str) -> String {
    let url = json!(url);
    format!(
        r#"new Promise((resolve, reject) => {{
  const deadline = Date.now() + {PAGE_WAIT_MS};
  (function poll() {{
    if (location.href === {url} && window.chat && chat.state() === 1) {{
      return resolve(document.title);
    }}
    if (Date.now() > deadline) {{
      const state = window.chat ? chat.state() : "no window.chat";
      return reject(new Error("not open: " + location.href + ", socket state " + state));
    }}
    setTimeout(poll, 20);
  }})();
}})"#
    )
}

/// A promise that resolves (with all lines) once a `#log li` reads `want`, watching the DOM
/// with a MutationObserver; it rejects after `PAGE_WAIT_MS`.
fn line_js(want: &str) -> String {
    let want = json!(want);
    format!(
        r#"new Promise((resolve, reject) => {{
  const log = document.getElementById("log");
  const lines = () => {LINES_JS};
  if (lines().includes({want})) {{ return resolve(lines()); }}
  const observer = new MutationObserver(() => {{
    if (lines().includes({want})) {{
      observer.disconnect();
      clearTimeout(timer);
      resolve(lines());
    }}
  }});
  const timer = setTimeout(() => {{
    observer.disconnect();
    reject(new Error("no line " + JSON.stringify({want}) + " in " + JSON.stringify(lines())));
  }}, {PAGE_WAIT_MS});
  observer.observe(log, {{ childList: true, subtree: true, characterData: true }});
}})"#
    )
}

/// Both pages, for steps and failure messages.
struct Pages {
    cdp: Cdp,
    alice: Tab,
    bob: Tab,
}

impl Pages {
    /// Fail with `what`, and every page's lines so far.
    fn fail(&mut self, what: String) -> ! {
        let alice = self.cdp.lines(&self.alice);
        let bob = self.cdp.lines(&self.bob);
        panic!("{what}\n  alice's page: {alice}\n  bob's page: {bob}")
    }

    /// Evaluate in `name`'s page; a failure names `what` and shows every page's lines.
    fn eval(&mut self, name: &str, what: &str, expression: &str) -> Value {
        let tab = match name {
            "alice" => &self.alice,
            "bob" => &self.bob,
            _ => unreachable!("no page {name}"),
        };
        match self.cdp.eval(tab, expression) {
            Ok(value) => value,
            Err(err) => self.fail(format!("{name}'s page: {what}: {err}")),
        }
    }

    /// Wait until `name`'s page shows `want` in its log.
    fn expect_line(&mut self, name: &str, want: &str) {
        let lines = self.eval(name, &format!("waiting for {want:?}"), &line_js(want));
        let shown = lines
            .as_array()
            .is_some_and(|lines| lines.iter().any(|line| line.as_str() == Some(want)));
        if !shown {
            self.fail(format!("{name}'s page resolved without {want:?}: {lines}"));
        }
    }

    fn login(&mut self, name: &str) {
        let uid = json!(name);
        self.eval(name, "login", &format!("chat.login({uid})"));
    }

    fn say(&mut self, name: &str, text: &str) {
        let js = format!("chat.say({})", json!(text));
        self.eval(name, &format!("saying {text:?}"), &js);
    }
}

/// Wait for `tab` to load `url` and open its socket; returns the page's title. Evaluating while
/// the first navigation commits can lose the old document's context: that is retried.
fn wait_open(cdp: &mut Cdp, tab: &Tab, url: &str) -> String {
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        match cdp.eval(tab, &ready_js(url)) {
            Ok(title) => return title.as_str().unwrap_or_default().to_string(),
            Err(err)
                if Instant::now() < deadline
                    && (err.contains("context") || err.contains("navigated")) =>
            {
                continue
            }
            Err(err) => {
                let lines = cdp.lines(tab);
                panic!(
                    "{}'s page never opened its chat socket: {err}; lines: {lines}",
                    tab.name
                )
            }
        }
    }
}

/// Standard base64 (padding and other bytes ignored).
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = ((acc << 6) | u32::from(value)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Save a screenshot of `tab` under the temp dir and print its path; a failure is only noted.
fn screenshot(cdp: &mut Cdp, tab: &Tab) {
    match cdp.call(
        Some(&tab.session),
        "Page.captureScreenshot",
        json!({ "format": "png" }),
    ) {
        Ok(shot) => {
            let png = base64_decode(shot["data"].as_str().unwrap_or_default());
            // One file, overwritten by each run.
            let path = std::env::temp_dir().join(format!("eddy-ws_chat-{}.png", tab.name));
            match std::fs::write(&path, &png) {
                Ok(()) => println!("{}'s page: {}", tab.name, path.display()),
                Err(err) => println!("screenshot not saved to {}: {err}", path.display()),
            }
        }
        Err(err) => println!("no screenshot of {}'s page: {err}", tab.name),
    }
}

#[test]
fn ws_chat_in_headless_chromium() {
    chat_in_browser(&[], "http", &[]);
}

/// The same over `https://` and `wss://`: the example's self-signed certificate, which the
/// browser is told to accept.
#[test]
fn ws_chat_over_tls_in_headless_chromium() {
    chat_in_browser(
        &["--tls-self-signed"],
        "https",
        &["--ignore-certificate-errors"],
    );
}

/// ws_chat started with `args`, its page at `scheme://ADDR/` in two tabs of a browser started
/// with `browser_args`: log in, talk, check every page's log.
fn chat_in_browser(args: &[&str], scheme: &str, browser_args: &[&str]) {
    let chat = Example::start("ws_chat", args);
    let url = format!("{scheme}://{}/", chat.addr);
    let browser = Browser::launch(browser_args);
    let mut cdp = Cdp::connect(&browser.devtools);

    let alice = cdp.open("alice", &url);
    let bob = cdp.open("bob", &url);
    // GET / serves the page, and each page's socket opens.
    for tab in [&alice, &bob] {
        let title = wait_open(&mut cdp, tab, &url);
        assert_eq!(title, "eddy chat", "{}'s page title", tab.name);
    }
    let mut pages = Pages { cdp, alice, bob };

    pages.login("alice");
    pages.expect_line("alice", "welcome alice");
    pages.login("bob");
    pages.expect_line("bob", "welcome bob");

    pages.say("alice", "bob:hello bob");
    pages.expect_line("bob", "alice: hello bob");

    pages.say("alice", "all:hi all");
    pages.expect_line("alice", "alice: hi all");
    pages.expect_line("bob", "alice: hi all");

    pages.say("alice", "/who");
    pages.expect_line("alice", "online alice bob");

    // The direct message went to bob only.
    let alice_lines = pages.eval("alice", "reading the log", LINES_JS);
    assert_eq!(
        alice_lines,
        json!(["welcome alice", "alice: hi all", "online alice bob"]),
        "alice's page"
    );
    let bob_lines = pages.eval("bob", "reading the log", LINES_JS);
    assert_eq!(
        bob_lines,
        json!(["welcome bob", "alice: hello bob", "alice: hi all"]),
        "bob's page"
    );

    if scheme == "http" {
        screenshot(&mut pages.cdp, &pages.bob);
    }
    // Dropped in reverse: the DevTools socket, the browser (killed), the example.
}
