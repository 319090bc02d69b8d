//! The one LISTEN loop: a connection on some channels, kept open until stopped, reconnected
//! with backoff. Used by the interface (wakes `next()`) and the API's backend (follows state
//! changes).

use sqlx::postgres::{PgListener, PgNotification, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;

/// What a [`listen`] loop heard.
pub(crate) enum Heard<'a> {
    /// A notification on one of the channels.
    Notification(&'a PgNotification),
    /// Connected, or the connection was lost (and is being made again): notifications may have
    /// been missed, so anything may have changed.
    Anything,
}

/// Listens on `channels` of `pool` until `stop`, calling `heard` with every notification and
/// with [`Heard::Anything`] after every (re)connect and lost connection. A connection that
/// cannot be made is tried again after `backoff`'s pause; one that works starts it over.
pub(crate) async fn listen(
    pool: &PgPool,
    channels: &[&str],
    backoff: Backoff,
    stop: &CancellationToken,
    mut heard: impl FnMut(Heard<'_>),
) {
    let mut failures = 0;
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen_all(channels.iter().copied()).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let connected = tokio::select! {
            connected = connected => connected,
            _ = stop.cancelled() => return,
        };
        match connected {
            Ok(mut listener) => {
                debug!(?channels, "listening");
                failures = 0;
                heard(Heard::Anything);
                loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        _ = stop.cancelled() => return,
                    };
                    match received {
                        Ok(Some(notification)) => heard(Heard::Notification(&notification)),
                        // Reconnected on the next call.
                        Ok(None) => {
                            info!(?channels, "the LISTEN connection was lost; reconnecting");
                            heard(Heard::Anything);
                        }
                        Err(e) => {
                            warn!(?channels, error = %e, "the LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                let pause = backoff.delay(failures);
                warn!(?channels, error = %e, retry_in = ?pause, "cannot LISTEN");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}
