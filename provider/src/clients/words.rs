//! Errors in an operator's words, shared by every client: the operating system's reason for a
//! failed connection (`connection refused`), the innermost cause of an error chain without
//! Rust's `(os error N)` noise, and PostgreSQL client errors said the same way. The raw error
//! chains stay for `TF_LOG=debug` where the callers log them. Knows nothing of Terraform.

/// The innermost cause's text, without Rust's `(os error N)` suffix.
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = last.source() {
        last = s;
    }
    let text = last.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The first `std::io::Error` in the chain, in words: `connection refused`, `connection reset
/// by peer`, `timed out`, …
pub fn io_words(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io_error_words(io));
        }
        next = err.source();
    }
    None
}

/// One I/O error in an operator's words.
pub fn io_error_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match io.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by peer".into(),
        ConnectionAborted => "connection aborted".into(),
        BrokenPipe => "the connection was closed by the other end".into(),
        UnexpectedEof => "the connection was closed before the answer was complete".into(),
        TimedOut => "timed out".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        AddrNotAvailable => "address not available".into(),
        PermissionDenied => "permission denied".into(),
        _ => {
            let text = io.to_string();
            match text.find(" (os error ") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    }
}

/// A PostgreSQL client error in words: the server's own message for errors the server sent
/// (the caller adds the SQLSTATE where it matters), the operating system's reason for a failed
/// connection, and otherwise the innermost cause, never sqlx's wrapper text (`error
/// communicating with database: ...`).
pub fn pg_error_words(e: &sqlx::Error) -> String {
    if let Some(d) = e.as_database_error() {
        return d.message().to_string();
    }
    tracing::debug!(error = ?e, "PostgreSQL client error");
    match e {
        sqlx::Error::Io(io) => io_error_words(io),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".into(),
        sqlx::Error::Tls(t) => format!("TLS: {}", innermost(t.as_ref())),
        sqlx::Error::Configuration(c) => {
            format!("invalid connection settings: {}", innermost(c.as_ref()))
        }
        sqlx::Error::Protocol(p) => format!("the server broke the protocol: {p}"),
        other => io_words(other).unwrap_or_else(|| innermost(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_in_words() {
        use std::io::{Error, ErrorKind};
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_error_words(&refused), "connection refused");
        let os = std::io::Error::from_raw_os_error(111);
        assert_eq!(io_error_words(&os), "connection refused");
        let other = std::io::Error::other("disk on fire");
        assert_eq!(io_error_words(&other), "disk on fire");
        assert_eq!(
            io_error_words(&Error::from(ErrorKind::ConnectionRefused)),
            "connection refused"
        );
        assert_eq!(
            innermost(&Error::other("no route (os error 113)")),
            "no route"
        );
    }

    #[test]
    fn postgres_errors_in_words() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(pg_error_words(&refused), "connection refused");
        assert!(
            refused
                .to_string()
                .contains("error communicating with database")
        );
        assert_eq!(
            pg_error_words(&sqlx::Error::PoolTimedOut),
            "timed out waiting for a connection"
        );
        assert_eq!(
            pg_error_words(&sqlx::Error::Protocol("unexpected message".into())),
            "the server broke the protocol: unexpected message"
        );
    }

    /// Against a real closed port: what sqlx says, and what the operator reads.
    #[tokio::test]
    async fn a_closed_port_reads_connection_refused() {
        use sqlx::Connection;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = sqlx::PgConnection::connect(&format!("postgres://u:p@127.0.0.1:{port}/db"))
            .await
            .unwrap_err();
        assert_eq!(pg_error_words(&e), "connection refused", "{e:?}");
    }
}
