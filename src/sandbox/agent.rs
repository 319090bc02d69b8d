//! The host end of the demoter agent's line protocol: over the container's attached stdio until
//! the agent's Unix socket in the io dir is connected ([`Agent::connect`]), then over that
//! socket, a local round trip without the engine in between; the attach stream then only
//! carries the agent's stderr, drained in the background.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use demoter::protocol::{Request, Response};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::task::JoinHandle;

use super::SandboxError;
use crate::sync::lock;

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Longest agent stderr kept to explain a failure.
const STDERR_TAIL: usize = 4096;

pub(super) struct Agent {
    container: String,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    lines: Lines,
    buffer: Vec<u8>,
    /// The tail of the agent's stderr.
    stderr: Arc<Mutex<String>>,
    /// Once on the socket: the attach stream's stdin, held open (the container was created with
    /// `stdin_once`: closing it would stop the agent), and the task draining its stderr.
    attached: Option<(Input, JoinHandle<()>)>,
}

/// Where responses come from.
enum Lines {
    Attached(Output),
    Socket(OwnedReadHalf),
}

impl Agent {
    pub(super) fn new(
        container: String,
        input: Pin<Box<dyn AsyncWrite + Send>>,
        output: Output,
    ) -> Self {
        Agent {
            container,
            input,
            lines: Lines::Attached(output),
            buffer: Vec::new(),
            stderr: Arc::default(),
            attached: None,
        }
    }

    fn gone(&self) -> SandboxError {
        SandboxError::AgentGone {
            container: self.container.clone(),
            stderr: lock(&self.stderr).trim().to_owned(),
        }
    }

    /// The agent was gone from its socket: waits a moment for the last of its stderr to be
    /// drained (the container's end closes the attach stream), so the error can quote it.
    async fn gone_from_socket(&mut self) -> SandboxError {
        if let Some((_, drain)) = &mut self.attached {
            tokio::time::timeout(Duration::from_millis(500), drain)
                .await
                .ok();
        }
        self.gone()
    }

    /// Moves the conversation to the agent's socket at `path` (made by `demoter agent
    /// --socket`, announced by a `Ready` on the attach stream) and waits for its `Ready` there.
    pub(super) async fn connect(
        &mut self,
        path: &Path,
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let stream =
            match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(source)) => {
                    return Err(SandboxError::Io {
                        path: path.to_owned(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(SandboxError::AgentTimeout {
                        container: self.container.clone(),
                        after: timeout,
                    })
                }
            };
        let (read, write) = stream.into_split();
        let stdin = std::mem::replace(&mut self.input, Box::pin(write));
        let Lines::Attached(output) = std::mem::replace(&mut self.lines, Lines::Socket(read))
        else {
            return Ok(());
        };
        // Whatever the attach stream still had buffered was the agent's before the socket.
        self.buffer.clear();
        let drain = tokio::spawn(drain_stderr(
            self.container.clone(),
            output,
            self.stderr.clone(),
        ));
        self.attached = Some((stdin, drain));
        match self.read(timeout).await? {
            Response::Ready { .. } => Ok(()),
            other => Err(SandboxError::AgentProtocol {
                container: self.container.clone(),
                answer: format!("{other:?}"),
            }),
        }
    }

    /// Sends one request and waits for its response.
    pub(super) async fn request(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, SandboxError> {
        let mut line = serde_json::to_vec(request).map_err(|e| SandboxError::AgentProtocol {
            container: self.container.clone(),
            answer: e.to_string(),
        })?;
        line.push(b'\n');
        if self.input.write_all(&line).await.is_err() || self.input.flush().await.is_err() {
            return Err(self.gone());
        }
        self.read(timeout).await
    }

    /// Reads the next response line.
    pub(super) async fn read(&mut self, timeout: Duration) -> Result<Response, SandboxError> {
        match tokio::time::timeout(timeout, self.read_line()).await {
            Ok(line) => {
                let line = line?;
                serde_json::from_slice(&line).map_err(|_| SandboxError::AgentProtocol {
                    container: self.container.clone(),
                    answer: String::from_utf8_lossy(&line).chars().take(500).collect(),
                })
            }
            Err(_) => Err(SandboxError::AgentTimeout {
                container: self.container.clone(),
                after: timeout,
            }),
        }
    }

    async fn read_line(&mut self) -> Result<Vec<u8>, SandboxError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Ok(line[..line.len() - 1].to_vec());
            }
            let output = match &mut self.lines {
                Lines::Socket(read) => match read.read_buf(&mut self.buffer).await {
                    Ok(0) | Err(_) => return Err(self.gone_from_socket().await),
                    Ok(_) => continue,
                },
                Lines::Attached(output) => output,
            };
            match output.next().await {
                Some(Ok(LogOutput::StdOut { message })) => self.buffer.extend_from_slice(&message),
                Some(Ok(LogOutput::StdErr { message })) => {
                    keep_stderr(&self.container, &self.stderr, &message)
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(self.gone()),
            }
        }
    }
}

/// Keeps the tail of the agent's stderr (and logs it at debug level).
fn keep_stderr(container: &str, stderr: &Mutex<String>, message: &[u8]) {
    let text = String::from_utf8_lossy(message);
    tracing::debug!(container = %container, agent = %text.trim_end(), "demoter agent stderr");
    let mut stderr = lock(stderr);
    stderr.push_str(&text);
    if stderr.len() > STDERR_TAIL {
        let cut = stderr.len() - STDERR_TAIL;
        let cut = (cut..stderr.len())
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(stderr.len());
        stderr.drain(..cut);
    }
}

/// Reads the attach stream until the container ends, keeping the agent's stderr (nothing may
/// be left unread there: a full stream would block the agent's writes).
async fn drain_stderr(container: String, mut output: Output, stderr: Arc<Mutex<String>>) {
    while let Some(Ok(item)) = output.next().await {
        match item {
            LogOutput::StdErr { message } => keep_stderr(&container, &stderr, &message),
            other => {
                tracing::debug!(container = %container, ?other, "demoter agent wrote outside its socket")
            }
        }
    }
}
