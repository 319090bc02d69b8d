//! Shared secrets: the service checks them (`serve --worker-token`, `--client-token`, the
//! callbacks' key; see `api::auth`) and the remote worker sends one (`worker --worker-token`),
//! so they live here, where both reach them.

/// A shared secret; its `Debug` does not show it, so no log or config dump does.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Self {
        Token(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}
