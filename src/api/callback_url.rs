//! A callback's URL: checked when a client gives one (allowed host, a secret to sign with),
//! and stored with the style it is sent in. Below the handlers that take one and the
//! callbacks that send them.

use axum::http::StatusCode;

use super::error::ApiError;
use super::ApiConfig;
use crate::workflow::webhook::Webhook;

/// Longest callback URL accepted (it is stored with the submission).
const MAX_URL_BYTES: usize = 2048;

/// How a callback is sent: the service's own (a POST of the native JSON) or Judge0's (a PUT of
/// the Judge0 JSON of `GET /submissions/{token}?base64_encoded=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Native,
    Judge0,
}

/// What marks a stored callback URL as [`Style::Judge0`]; no URL accepted starts with it (they
/// start with `http://`).
const JUDGE0_MARK: &str = "judge0:";

/// The callback URL as the store keeps it: `url`, marked with its style unless native.
pub fn stored_url(url: &str, style: Style) -> String {
    match style {
        Style::Native => url.to_owned(),
        Style::Judge0 => format!("{JUDGE0_MARK}{url}"),
    }
}

/// The style and the URL of a stored callback URL ([`stored_url`]).
pub fn parse_stored(stored: &str) -> (Style, &str) {
    match stored.strip_prefix(JUDGE0_MARK) {
        Some(url) => (Style::Judge0, url),
        None => (Style::Native, stored),
    }
}

/// Refuses (400) a callback URL that is not an `http://` URL (or longer than 2 KiB), whose host the operator did not
/// allow (`serve --webhook-allow`, the list rejudge webhooks use), or any callback when there is
/// no secret to sign it with.
pub fn check_url(url: &str, config: &ApiConfig) -> Result<Webhook, ApiError> {
    if url.len() > MAX_URL_BYTES {
        return Err(ApiError::bad_request(format!(
            "callbackUrl is {} bytes; at most {MAX_URL_BYTES} are accepted",
            url.len()
        )));
    }
    let webhook = Webhook::parse(url)
        .map_err(|e| ApiError::bad_request(format!("callbackUrl is not valid: {e}")))?;
    let refused = |message: String| {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "callbackNotAllowed",
            message,
        ))
    };
    if !webhook.is_allowed(&config.webhook_hosts) {
        return refused(if config.webhook_hosts.is_empty() {
            "this service sends no callbacks (its operator can allow hosts with serve --webhook-allow)".to_owned()
        } else {
            format!(
                "callbacks may only go to {}",
                config.webhook_hosts.join(", ")
            )
        });
    }
    if config.callbacks.secret.is_none() {
        return refused(
            "this service sends no callbacks: it has no secret to sign them with (serve --callback-secret)".to_owned(),
        );
    }
    Ok(webhook.with_timeout(config.callbacks.timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Token;
    use crate::api::callbacks::CallbackConfig;

    #[test]
    fn urls_need_an_allowed_host_and_a_secret() {
        let config = |hosts: &[&str], secret: Option<&str>| ApiConfig {
            webhook_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            callbacks: CallbackConfig {
                secret: secret.map(Token::new),
                ..CallbackConfig::default()
            },
            ..ApiConfig::default()
        };
        let allowed = config(&["hooks.local"], Some("s"));
        assert!(check_url("http://hooks.local:9/x", &allowed).is_ok());
        let code = |url, config: &ApiConfig| check_url(url, config).unwrap_err().code;
        assert_eq!(code("http://other.local/x", &allowed), "callbackNotAllowed");
        assert_eq!(code("https://hooks.local/x", &allowed), "badRequest");
        assert_eq!(code("", &allowed), "badRequest");
        let long = format!("http://hooks.local/{}", "x".repeat(MAX_URL_BYTES));
        assert_eq!(code(&long, &allowed), "badRequest");
        let unsigned = config(&["hooks.local"], None);
        assert_eq!(
            code("http://hooks.local/x", &unsigned),
            "callbackNotAllowed"
        );
    }
}
