//! Refusing a request body over a route's limit so that the client hears
//! the refusal. Answering while the client is still sending makes the
//! server close a connection with unread data on it, and the peer's kernel
//! may then throw the answer away with the reset: an IdP would see a broken
//! connection instead of a 413. So a body declared over the limit is read
//! and discarded first (up to [`DRAIN_LIMIT`]; beyond that the connection
//! is closed unread, no IdP sends that much).

use axum::extract::Request;
use axum::http::header;

/// The largest declared body read (and discarded) before it is refused.
pub const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// `request` as it came when its declared length is `limit` bytes or
/// less (or not declared: the route's own limit then applies as it reads);
/// otherwise the declared length, once the body has been read and dropped.
pub async fn within(request: Request, limit: u64) -> Result<Request, u64> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(length) = declared.filter(|length| *length > limit) else {
        return Ok(request);
    };
    if length <= DRAIN_LIMIT {
        use futures_util::StreamExt;
        let mut body = request.into_body().into_data_stream();
        while let Some(Ok(_)) = body.next().await {}
    }
    Err(length)
}
