//! Headless Chromium (Debian `chromium`, installed by `infra/install.sh`) driven over the
//! DevTools protocol: one browser per test shows every view, takes its screenshots and clicks
//! its buttons. A browser started per view (`--dump-dom`, `--screenshot`) spent four minutes
//! of every CI run starting Chromium, and only shows a page as it loads, where an operator's
//! decision is a button pressed on a page already shown.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// The Chromium binary this machine has.
pub fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate;
        }
    }
    panic!("headless Chromium is needed: apt-get install chromium (infra/install.sh does)");
}

/// One browser with one page, closed when dropped.
pub struct Browser {
    child: Child,
    profile: std::path::PathBuf,
    socket: WebSocket<TcpStream>,
    /// The page's session on the browser's one connection (flat attachment).
    session: String,
    next_id: u64,
}

impl Browser {
    /// A headless browser whose language is `lang`, with a blank page attached.
    pub fn launch(lang: &str) -> Browser {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let profile =
            std::env::temp_dir().join(format!("trawl-chromium-{}-{nanos}", std::process::id()));
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
                &format!("--accept-lang={lang}"),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // It says where its DevTools endpoint listens on stderr, among its other chatter.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(at) = line.find("ws://") {
                        let _ = tx.send(line[at..].trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium announces its DevTools endpoint");
        let host = endpoint
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let stream = TcpStream::connect(&host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (socket, _) = tungstenite::client(endpoint.as_str(), stream).unwrap();
        let mut browser = Browser {
            child,
            profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let targets = browser.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target")["targetId"]
            .clone();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.call("Page.enable", json!({}));
        browser
    }

    /// Sends one command (to the page once attached) and returns its result, skipping the
    /// events that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params) {
            Ok(result) => result,
            Err(reply) => panic!("{method}: {reply}"),
        }
    }

    /// [`Browser::call`], with the browser's error reply as `Err`.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .unwrap();
        loop {
            let message = self.socket.read().unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(text.as_str()).unwrap();
            if reply["id"] == id {
                return match reply["error"].is_null() {
                    true => Ok(reply["result"].clone()),
                    false => Err(reply),
                };
            }
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// `Runtime.evaluate` of `expression`, its value returned (awaited if a promise); the
    /// browser's error reply as `Err`.
    fn evaluate(&mut self, expression: &str) -> Result<Value, Value> {
        self.try_call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )
    }

    /// Loads `url` as a new document and waits until the dashboard has drawn its view:
    /// `#view`'s `data-state` is `state` (`ready`, or `error` for an address it refuses).
    /// Through a blank page, so a view is never read from the document before it.
    pub fn open(&mut self, url: &str, state: &str) {
        self.navigate("about:blank");
        self.wait_for(r#"location.href === "about:blank""#);
        self.navigate(url);
        let state = serde_json::to_string(state).unwrap();
        self.wait_for(&format!(
            r##"location.href !== "about:blank" && document.querySelector("#view") !== null && document.querySelector("#view").dataset.state === {state}"##
        ));
    }

    /// The page's document as HTML, as `--dump-dom` prints it.
    pub fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .expect("the document serializes")
            .to_string()
    }

    /// A PNG of the page as a window `width` × `height` shows it, written to `path`.
    pub fn screenshot(&mut self, path: &std::path::Path, width: u32, height: u32) {
        use base64::Engine;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("a screenshot"))
            .unwrap();
        assert!(
            png.len() > 5_000,
            "{} is {} bytes",
            path.display(),
            png.len()
        );
        std::fs::write(path, png).unwrap();
    }

    /// The value of a JavaScript expression in the page (awaited if a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .evaluate(expression)
            .unwrap_or_else(|reply| panic!("{expression}: {reply}"));
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page, or fails saying what the page shows.
    pub fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // While a page is replaced, its old document's context can be gone before the new
            // one has any: such an answer (an error, or a thrown exception) means "not yet".
            let answer = self.evaluate(expression);
            if answer.is_ok_and(|r| r["result"]["value"] == json!(true)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let shown = self.eval("document.querySelector('main') ? document.querySelector('main').innerText : document.body.innerText");
        panic!("the page never had {expression}; it shows: {shown}");
    }

    /// Clicks the element `selector` names, as a person would (it must be there and enabled).
    pub fn click(&mut self, selector: &str) {
        let selector = serde_json::to_string(selector).unwrap();
        let clicked = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector}); if (!e || e.disabled) return false; e.click(); return true; }})()"
        ));
        assert_eq!(clicked, json!(true), "{selector} is not there to click");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
