//! A real headless Chromium, driven over the Chrome DevTools Protocol, for the dashboard's
//! tests.
//!
//! [`Browser::launch`] starts Debian's `chromium` (or `MLMODEL_CHROMIUM`) headless with a
//! throwaway profile and a DevTools port the kernel picks, and attaches to its first
//! page. The page's script errors and Content-Security-Policy violations are collected
//! from before any of its own script runs, so a test can assert there were none.
//!
//! Without Chromium the test skips, unless `MLMODEL_REQUIRE_SWARM=1` (as in CI, where
//! `.ci/run` installs it), where a missing browser is a failure.

use super::REQUIRE_SWARM;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Installed before every document's own script: records script errors and CSP
/// violations where [`Page::problems`] reads them.
const WATCH_PROBLEMS: &str = r#"
window.__problems = [];
window.addEventListener("error", (e) => window.__problems.push("error: " + e.message));
window.addEventListener("unhandledrejection", (e) => window.__problems.push("rejection: " + e.reason));
document.addEventListener("securitypolicyviolation", (e) =>
  window.__problems.push("csp: " + e.violatedDirective + " blocked " + e.blockedURI));
"#;

/// A running headless Chromium; killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    /// The DevTools HTTP endpoint, `http://127.0.0.1:PORT`.
    devtools: String,
}

/// One page (tab) of a [`Browser`].
pub struct Page {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium, or returns `None` (after saying why) where there is none and
    /// `MLMODEL_REQUIRE_SWARM` is not `1`.
    pub fn launch() -> Option<Browser> {
        let Some(binary) = chromium_binary() else {
            let why = "no chromium on PATH (apt-get install chromium, or set MLMODEL_CHROMIUM)";
            if std::env::var(REQUIRE_SWARM).as_deref() == Ok("1") {
                panic!("{REQUIRE_SWARM}=1 but {why}");
            }
            eprintln!("skipping: {why}");
            return None;
        };
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} starts: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let devtools = devtools_address(stderr)
            .unwrap_or_else(|| panic!("{binary} printed no DevTools address"));
        Some(Browser {
            child,
            _profile: profile,
            devtools,
        })
    }

    /// Attaches to the browser's first page.
    pub async fn page(&self) -> Page {
        let list = format!("{}/json/list", self.devtools);
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = loop {
            let targets: Value = reqwest::get(&list)
                .await
                .expect("DevTools answers")
                .json()
                .await
                .expect("a JSON target list");
            let page = targets
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(String::from);
            if let Some(url) = page {
                break url;
            }
            assert!(Instant::now() < deadline, "no page target in {targets}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("the page's DevTools socket");
        let mut page = Page { socket, next_id: 0 };
        page.call("Page.enable", json!({})).await;
        page.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": WATCH_PROBLEMS }),
        )
        .await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page {
    /// Sends one DevTools command and returns its result; panics on a protocol error.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .expect("a DevTools request");
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(message) = self.socket.next().await {
                let Ok(Message::Text(text)) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
                // Anything without our id is an event: not waited for.
                if value["id"] == id {
                    return value;
                }
            }
            panic!("the DevTools socket closed during {method}");
        })
        .await
        .unwrap_or_else(|_| panic!("{method} got no answer in 30 s"));
        if !answer["error"].is_null() {
            panic!("{method} failed: {}", answer["error"]);
        }
        answer["result"].clone()
    }

    /// Loads `url` and waits for its document to be complete.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for(
            &format!("{url} loaded"),
            "document.readyState === 'complete'",
            Duration::from_secs(15),
        )
        .await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until it is `true`; panics with `what`, the
    /// page's text and its problems after `timeout`.
    pub async fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                let problems = self.problems().await;
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- page ---\n{}\n--- problems ---\n{problems:?}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The script errors and CSP violations the page has had.
    pub async fn problems(&mut self) -> Vec<String> {
        let value = self.eval("window.__problems || []").await;
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(String::from))
            .collect()
    }

    /// Saves a PNG of the viewport to `path`; returns its size in bytes.
    pub async fn screenshot(&mut self, path: &Path) -> usize {
        use base64::Engine as _;
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, &png).expect("screenshot written");
        png.len()
    }
}

/// `MLMODEL_CHROMIUM`, else the first of Chromium's usual names on PATH.
fn chromium_binary() -> Option<String> {
    if let Ok(binary) = std::env::var("MLMODEL_CHROMIUM") {
        return Some(binary);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(String::from)
}

/// Reads Chromium's stderr up to `DevTools listening on ws://HOST:PORT/...` and returns
/// `http://HOST:PORT`; the rest of stderr is drained on a thread so the browser never
/// blocks on a full pipe.
fn devtools_address(stderr: std::process::ChildStderr) -> Option<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                let host = rest.split('/').next().unwrap_or_default().to_string();
                let _ = sender.send(format!("http://{host}"));
                sent = true;
            }
        }
    });
    receiver.recv_timeout(Duration::from_secs(30)).ok()
}
