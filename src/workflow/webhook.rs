//! Telling an owner about a result: a JSON `POST` to a webhook, and the step that sends one
//! about another step's outcome. Plain HTTP/1.1 over a TCP stream (no TLS: webhooks of this
//! deployment are on the local network), retried through the step's retry policy.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::engine::step::{Step, StepError};
use super::engine::StepContext;

/// Longest a whole exchange with the webhook may take (default of [`Webhook::parse`]).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most of the response read (only the status line matters).
const MAX_RESPONSE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {url:?} is not a valid http:// URL: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("webhook {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("webhook {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("webhook {url} answered with something that is not HTTP: {head:?}")]
    NotHttp { url: String, head: String },
    #[error("webhook {url} answered {status}")]
    Status { url: String, status: u16 },
}

impl WebhookError {
    /// Worth trying again: the network, a timeout, or a server error; not a refusal (4xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            WebhookError::InvalidUrl { .. } => false,
            WebhookError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => true,
        }
    }
}

/// An `http://host[:port][/path]` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    url: String,
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
}

impl Webhook {
    pub fn parse(url: &str) -> Result<Self, WebhookError> {
        let invalid = |reason| WebhookError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse()
                    .map_err(|_| invalid("the port is not a number"))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(invalid("there is no host"));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("the path has white space"));
        }
        Ok(Webhook {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            timeout: TIMEOUT,
        })
    }

    pub fn with_timeout(self, timeout: Duration) -> Self {
        Webhook { timeout, ..self }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether `allowed` lets this webhook be called: an entry `host` allows any port of that
    /// host, `host:port` only that port. Hosts are compared as written (ignoring ASCII case),
    /// never resolved, so an allowed name cannot be swapped for an address.
    pub fn is_allowed(&self, allowed: &[String]) -> bool {
        allowed.iter().any(|entry| {
            let entry = entry.trim();
            let (host, port) = match entry.rsplit_once(':') {
                // `[::1]:80`; a bare IPv6 address has no port.
                Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
                    match port.parse::<u16>() {
                        Ok(port) => (host, Some(port)),
                        Err(_) => return false,
                    }
                }
                _ => (entry, None),
            };
            host.eq_ignore_ascii_case(&self.host) && port.is_none_or(|p| p == self.port)
        })
    }

    /// POSTs `body` as JSON; `Ok` with the status for a 2xx answer.
    pub async fn post(&self, body: &Value) -> Result<u16, WebhookError> {
        self.post_text(&body.to_string(), &[]).await
    }

    /// POSTs `body` (JSON text, sent byte for byte: what a signature covers) with `headers`
    /// added (names and values must not contain line breaks); `Ok` with the status for a 2xx
    /// answer.
    pub async fn post_text(
        &self,
        body: &str,
        headers: &[(&str, String)],
    ) -> Result<u16, WebhookError> {
        self.send_text("POST", body, headers).await
    }

    /// Sends `body` as [`Webhook::post_text`] does, with `method` (`POST`, `PUT`).
    pub async fn send_text(
        &self,
        method: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> Result<u16, WebhookError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, body, headers)).await {
            Ok(result) => result,
            Err(_) => Err(WebhookError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        body: &str,
        headers: &[(&str, String)],
    ) -> Result<u16, WebhookError> {
        let io = |source| WebhookError::Io {
            url: self.url.clone(),
            source,
        };
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let mut stream = TcpStream::connect((host, self.port)).await.map_err(io)?;
        let extra: String = headers
            .iter()
            .filter(|(name, value)| !format!("{name}{value}").contains(['\r', '\n']))
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let request = format!(
            "{method} {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: executioner\r\n{extra}\r\n{}",
            self.path,
            self.host,
            self.port,
            body.len(),
            body
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.windows(2).any(|w| w == b"\r\n") && response.len() < MAX_RESPONSE {
            let n = stream.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&response);
        let status_line = head.lines().next().unwrap_or_default();
        let status = match status_line.split_whitespace().collect::<Vec<_>>()[..] {
            [version, status, ..] if version.starts_with("HTTP/1.") => status.parse::<u16>().ok(),
            _ => None,
        }
        .ok_or_else(|| WebhookError::NotHttp {
            url: self.url.clone(),
            head: status_line.chars().take(80).collect(),
        })?;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(WebhookError::Status {
                url: self.url.clone(),
                status,
            })
        }
    }
}

/// Tells the owner how step `about` ended: `{workflow, step, state, attempts, result | error}`.
/// Runs after `about` has finished (a `completion_pairs` successor).
pub struct NotifyStep {
    pub webhook: Webhook,
    pub about: String,
}

#[async_trait]
impl Step for NotifyStep {
    async fn run(&self, ctx: StepContext) -> Result<Value, StepError> {
        let status = ctx
            .status_of(&self.about)
            .ok_or_else(|| StepError::fatal(format!("there is no step {:?}", self.about)))?;
        let body = json!({
            "workflow": ctx.workflow(),
            "step": status.id,
            "tags": status.tags,
            "state": status.state,
            "attempts": status.attempts,
            "result": status.result,
            "error": status.error,
        });
        let post = self.webhook.post(&body);
        let status = tokio::select! {
            status = post => status,
            _ = ctx.cancel().cancelled() => return Err(StepError::fatal("interrupted")),
        };
        match status {
            Ok(status) => Ok(json!({ "webhook": self.webhook.url(), "status": status })),
            Err(e) if e.is_retryable() => Err(StepError::retryable(e.to_string())),
            Err(e) => Err(StepError::fatal(e.to_string())),
        }
    }
}

/// A loopback HTTP server for tests: answers each request with the next status, hands over
/// each request's JSON body.
#[cfg(test)]
pub(crate) mod test_server {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    pub async fn serve(statuses: Vec<u16>) -> (Webhook, mpsc::UnboundedReceiver<Value>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for status in statuses {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let body = read_request(&mut stream).await;
                let _ = tx.send(body);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        let webhook = Webhook::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        (webhook, rx)
    }

    async fn read_request(stream: &mut tokio::net::TcpStream) -> Value {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                assert!(head.starts_with("post /hook http/1.1"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap();
                if data.len() >= end + 4 + length {
                    return serde_json::from_slice(&data[end + 4..end + 4 + length]).unwrap();
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            data.extend_from_slice(&buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_hosts_and_ports_are_allowed() {
        let allowed = |url: &str, list: &[&str]| {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            Webhook::parse(url).unwrap().is_allowed(&list)
        };
        assert!(!allowed("http://127.0.0.1:9/x", &[]));
        assert!(allowed(
            "http://hooks.example.org/x",
            &["hooks.example.org"]
        ));
        assert!(allowed(
            "http://HOOKS.example.org:81/x",
            &["hooks.example.org"]
        ));
        assert!(allowed(
            "http://hooks.example.org:81/",
            &["hooks.example.org:81"]
        ));
        assert!(!allowed(
            "http://hooks.example.org/",
            &["hooks.example.org:81"]
        ));
        assert!(!allowed("http://evil.example.org/", &["example.org"]));
        assert!(!allowed("http://169.254.169.254/", &["hooks.example.org"]));
        assert!(!allowed(
            "http://hooks.example.org/",
            &["hooks.example.org:http"]
        ));
        assert!(allowed("http://[::1]:8080/", &["[::1]:8080"]));
        assert!(allowed("http://[::1]:8080/", &["[::1]"]));
        assert!(!allowed("http://[::1]:8081/", &["[::1]:8080"]));
    }

    #[test]
    fn urls_are_parsed_or_refused() {
        let w = Webhook::parse("http://127.0.0.1:8080/a/b?c=d").unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("127.0.0.1", 8080, "/a/b?c=d")
        );
        let w = Webhook::parse("http://localhost").unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("localhost", 80, "/")
        );
        for bad in [
            "https://x/",
            "ftp://x",
            "http://:80/",
            "http://x:port/",
            "http://x/a b",
        ] {
            assert!(
                matches!(Webhook::parse(bad), Err(WebhookError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_post_delivers_the_body_and_reads_the_status() {
        let (webhook, mut bodies) = test_server::serve(vec![204, 503, 404]).await;
        assert_eq!(webhook.post(&json!({"a": 1})).await.unwrap(), 204);
        assert_eq!(bodies.recv().await, Some(json!({"a": 1})));
        let server_error = webhook.post(&json!({})).await.unwrap_err();
        assert!(server_error.is_retryable(), "{server_error}");
        let refused = webhook.post(&json!({})).await.unwrap_err();
        assert!(matches!(refused, WebhookError::Status { status: 404, .. }));
        assert!(!refused.is_retryable());
        // The server is gone: connection refused, worth retrying.
        let gone = webhook.post(&json!({})).await.unwrap_err();
        assert!(gone.is_retryable(), "{gone}");
    }
}
