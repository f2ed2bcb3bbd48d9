//! Resume tokens. Clients must treat them as opaque; inside, a token names a position in the
//! change log.

use bson::{rawdoc, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp};

use crate::error::{CommandError, CommandResult};

/// The kind of log position a token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A returned event; resuming continues after it.
    Event,
    /// The invalidate event that followed the event at this position; only `startAfter` may
    /// continue from it.
    Invalidate,
    /// A position reached without returning an event (`postBatchResumeToken` of an idle batch).
    HighWaterMark,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeToken {
    pub cluster_time: Timestamp,
    pub sequence: u64,
    pub kind: TokenKind,
}

/// Error 260 InvalidResumeToken.
pub fn invalid_token(message: impl Into<String>) -> CommandError {
    let mut error = CommandError::new(260, message);
    error.code_name = "InvalidResumeToken".to_string();
    error
}

impl ResumeToken {
    /// Encodes the token as `{_data: "<hex>"}`, like MongoDB's, with the cluster time first so
    /// tokens sort in log order.
    pub fn encode(&self) -> RawDocumentBuf {
        let kind = match self.kind {
            TokenKind::Event => 0,
            TokenKind::Invalidate => 1,
            TokenKind::HighWaterMark => 2,
        };
        let data = format!(
            "82{:08X}{:08X}{:016X}{:02X}",
            self.cluster_time.time, self.cluster_time.increment, self.sequence, kind
        );
        rawdoc! { "_data": data }
    }

    pub fn decode(token: RawBsonRef<'_>) -> CommandResult<ResumeToken> {
        let document: &RawDocument = match token {
            RawBsonRef::Document(document) => document,
            _ => return Err(invalid_token("resume token must be an object")),
        };
        let data = document
            .get_str("_data")
            .map_err(|_| invalid_token("resume token must contain a string '_data' field"))?;
        let malformed = || invalid_token(format!("malformed resume token: {data}"));
        if data.len() != 36 || !data.starts_with("82") {
            return Err(malformed());
        }
        let hex = |range: std::ops::Range<usize>| {
            u64::from_str_radix(&data[range], 16).map_err(|_| malformed())
        };
        let kind = match hex(34..36)? {
            0 => TokenKind::Event,
            1 => TokenKind::Invalidate,
            2 => TokenKind::HighWaterMark,
            _ => return Err(malformed()),
        };
        Ok(ResumeToken {
            cluster_time: Timestamp {
                time: hex(2..10)? as u32,
                increment: hex(10..18)? as u32,
            },
            sequence: hex(18..34)?,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let token = ResumeToken {
            cluster_time: Timestamp {
                time: 1_700_000_000,
                increment: 42,
            },
            sequence: 123_456,
            kind: TokenKind::Invalidate,
        };
        let encoded = token.encode();
        assert_eq!(
            ResumeToken::decode(RawBsonRef::Document(&encoded)).unwrap(),
            token
        );
    }

    #[test]
    fn garbage_token_is_rejected() {
        let error =
            ResumeToken::decode(RawBsonRef::Document(&rawdoc! { "_data": "zz" })).unwrap_err();
        assert_eq!(error.code, 260);
    }
}
