//! The host end of the demoter agent's line protocol, over the container's attached stdio.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use demoter::protocol::{Request, Response};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::SandboxError;

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// Longest agent stderr kept to explain a failure.
const STDERR_TAIL: usize = 4096;

pub(super) struct Agent {
    container: String,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Output,
    buffer: Vec<u8>,
    stderr: String,
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
            output,
            buffer: Vec::new(),
            stderr: String::new(),
        }
    }

    fn gone(&self) -> SandboxError {
        SandboxError::AgentGone {
            container: self.container.clone(),
            stderr: self.stderr.trim().to_owned(),
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
            match self.output.next().await {
                Some(Ok(LogOutput::StdOut { message })) => self.buffer.extend_from_slice(&message),
                Some(Ok(LogOutput::StdErr { message })) => {
                    let text = String::from_utf8_lossy(&message);
                    tracing::debug!(container = %self.container, agent = %text.trim_end(), "demoter agent stderr");
                    self.stderr.push_str(&text);
                    if self.stderr.len() > STDERR_TAIL {
                        let cut = self.stderr.len() - STDERR_TAIL;
                        let cut = (cut..self.stderr.len())
                            .find(|&i| self.stderr.is_char_boundary(i))
                            .unwrap_or(self.stderr.len());
                        self.stderr.drain(..cut);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(self.gone()),
            }
        }
    }
}
