//! ClickHouse's HTTP interface, spoken directly: one HTTP/1.0 request per statement, so the
//! answer ends with the connection and is never chunked (no HTTP client dependency for this).

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};

use super::{ClickHouseConfig, err};
use crate::store::StoreError;

pub(super) struct Client {
    pub(super) config: ClickHouseConfig,
}

/// A string literal: ClickHouse reads backslash escapes inside single quotes.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Percent-encodes a URL query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    /// One HTTP/1.0 request (the answer then ends with the connection, never chunked): the
    /// body on 200, ClickHouse's own message otherwise.
    pub(super) fn http(&self, sql: &str, body: &[u8]) -> Result<String, StoreError> {
        let unreachable =
            |e: std::io::Error| StoreError(format!("ClickHouse at {}: {e}", self.config.address));
        let address = self
            .config
            .address
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| {
                StoreError(format!("ClickHouse at {}: no address", self.config.address))
            })?;
        let mut stream =
            TcpStream::connect_timeout(&address, self.config.timeout).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(self.config.timeout))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(self.config.timeout))
            .map_err(unreachable)?;
        let mut path = format!("/?query={}", encode(sql));
        let mut auth = String::new();
        if let Some(user) = &self.config.user {
            auth.push_str(&format!("X-ClickHouse-User: {user}\r\n"));
        }
        if let Some(password) = &self.config.password {
            auth.push_str(&format!("X-ClickHouse-Key: {password}\r\n"));
        }
        // Long statements travel in the body instead of the URL.
        let payload: Vec<u8> = if body.is_empty() && path.len() > 8000 {
            path = "/".to_owned();
            sql.as_bytes().to_vec()
        } else {
            body.to_vec()
        };
        let head = format!(
            "POST {path} HTTP/1.0\r\nHost: {}\r\n{auth}Content-Length: {}\r\n\r\n",
            self.config.address,
            payload.len()
        );
        stream.write_all(head.as_bytes()).map_err(unreachable)?;
        stream.write_all(&payload).map_err(unreachable)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(unreachable)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| StoreError("ClickHouse: an answer without headers".into()))?;
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "200" {
            return Err(StoreError(format!(
                "ClickHouse answered {status}: {}",
                body.trim()
            )));
        }
        Ok(body.to_owned())
    }

    pub(super) fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.http(sql, b"").map(|_| ())
    }

    pub(super) fn rows(&self, sql: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        let body = self.http(&format!("{sql} FORMAT JSONEachRow"), b"")?;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(err))
            .collect()
    }
}
