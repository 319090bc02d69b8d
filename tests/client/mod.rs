//! A minimal HTTP/1.1 client for the tests that talk to a real server on port 0: one request
//! per connection, and a Server-Sent Events stream read event by event; and requests to a
//! router in process (`oneshot`).

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// How long one request may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// A response: the status, the head (lower case, for looking for headers) and the JSON body
/// (`Null` when there is none).
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

/// One request with `Connection: close`.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Reply {
    request_as(addr, None, method, path, body).await
}

/// One request with `Connection: close`, with `token` as its bearer token when given.
pub async fn request_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    Reply {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status"),
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// One request to `router` in process, no socket: the status, the headers and the JSON body
/// (`Null` when there is none).
pub async fn oneshot(
    router: Router,
    method: Method,
    uri: &str,
    body: Option<&Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            HttpBody::from(body.to_string())
        }
        None => HttpBody::empty(),
    };
    let response = router
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    (status, headers, body)
}

/// `text` as a query value: everything but the unreserved characters percent-encoded.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An open event stream.
pub struct Events {
    lines: Lines<BufReader<TcpStream>>,
}

impl Events {
    pub async fn open(addr: SocketAddr, path: &str) -> Events {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        Events {
            lines: BufReader::new(stream).lines(),
        }
    }

    /// The name of the next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<String> {
        while let Some(line) = self.lines.next_line().await.expect("read the stream") {
            if let Some(event) = line.strip_prefix("event: ") {
                return Some(event.to_owned());
            }
        }
        None
    }
}

/// Polls an operation (with `poll`) whenever a submission or a workflow of `state` changed,
/// until its status is `status`; its JSON then.
pub async fn until_operation<F, Fut>(
    state: &executioner::api::AppState,
    id: &str,
    status: &str,
    deadline: Duration,
    poll: F,
) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let runner = state.workflows().expect("a service with workflows").clone();
    let waiting = async {
        loop {
            let mut submissions = state.backend().subscribe();
            let mut workflows = runner.subscribe();
            let op = poll().await;
            if op["status"] == status {
                return op;
            }
            tokio::select! {
                _ = submissions.recv() => {}
                _ = workflows.recv() => {}
            }
        }
    };
    tokio::time::timeout(deadline, waiting)
        .await
        .unwrap_or_else(|_| panic!("operation {id} did not become {status} in time"))
}
