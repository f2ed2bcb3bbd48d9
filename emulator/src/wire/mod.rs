//! The MongoDB wire protocol: message framing, OP_MSG sections, the CRC-32C checksum, and the
//! legacy OP_QUERY/OP_REPLY pair that some drivers (pymongo among them) use for the first
//! handshake before they know the server's wire version.

mod builder;

pub use builder::DocBuilder;

use bson::RawDocument;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OP_REPLY: i32 = 1;
pub const OP_QUERY: i32 = 2004;
pub const OP_COMPRESSED: i32 = 2012;
pub const OP_MSG: i32 = 2013;

pub const FLAG_CHECKSUM_PRESENT: u32 = 1;
pub const FLAG_MORE_TO_COME: u32 = 1 << 1;
pub const FLAG_EXHAUST_ALLOWED: u32 = 1 << 16;

/// Header length: messageLength, requestID, responseTo and opCode, each an i32.
pub const HEADER_LEN: usize = 16;
/// Bytes before an OP_MSG reply body: the header, the flag bits and the section kind byte.
pub const OP_MSG_PREFIX_LEN: usize = HEADER_LEN + 4 + 1;
/// The largest message the server accepts; the same value is advertised as `maxMessageSizeBytes`.
pub const MAX_MESSAGE_SIZE: usize = 48_000_000;

/// A failure to read or decode a message. Every variant closes the connection, as `mongod` does
/// for malformed frames.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// One decoded request.
pub struct Request {
    pub request_id: i32,
    pub op_code: i32,
    pub flags: u32,
    /// The whole message as read from the socket; sections point into it.
    pub bytes: Vec<u8>,
    /// Byte range of the kind-0 body (OP_MSG) or the query document (OP_QUERY).
    pub body: std::ops::Range<usize>,
    /// Kind-1 document sequences: identifier and the byte ranges of their documents.
    pub sequences: Vec<(String, Vec<std::ops::Range<usize>>)>,
    /// For OP_QUERY, the database named by the `db.$cmd` collection (OP_MSG uses `$db`).
    pub legacy_database: Option<String>,
}

impl Request {
    pub fn body(&self) -> &RawDocument {
        RawDocument::from_bytes(&self.bytes[self.body.clone()]).expect("validated when read")
    }

    /// Returns the documents of the kind-1 sequence named `identifier`, if the request has one.
    pub fn sequence(&self, identifier: &str) -> Option<Vec<&RawDocument>> {
        self.sequences
            .iter()
            .find(|(name, _)| name == identifier)
            .map(|(_, ranges)| {
                ranges
                    .iter()
                    .map(|r| RawDocument::from_bytes(&self.bytes[r.clone()]).expect("validated"))
                    .collect()
            })
    }

    pub fn more_to_come(&self) -> bool {
        self.op_code == OP_MSG && self.flags & FLAG_MORE_TO_COME != 0
    }

    pub fn checksum_present(&self) -> bool {
        self.flags & FLAG_CHECKSUM_PRESENT != 0
    }
}

/// Reads one message from `reader`. Returns `WireError::Closed` on a clean end of stream.
pub async fn read_request<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Request, WireError> {
    let mut length_bytes = [0u8; 4];
    match reader.read_exact(&mut length_bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let length = i32::from_le_bytes(length_bytes);
    if length < HEADER_LEN as i32 + 5 || length as usize > MAX_MESSAGE_SIZE {
        return Err(WireError::Invalid(format!(
            "message length {length} is out of range"
        )));
    }
    let mut bytes = vec![0u8; length as usize];
    bytes[..4].copy_from_slice(&length_bytes);
    reader.read_exact(&mut bytes[4..]).await?;
    parse_request(bytes)
}

fn read_i32(bytes: &[u8], at: usize) -> Result<i32, WireError> {
    bytes
        .get(at..at + 4)
        .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| WireError::Invalid("message ends inside an integer".into()))
}

/// Returns the range of the BSON document starting at `at`, after checking it is well formed.
fn document_at(bytes: &[u8], at: usize, end: usize) -> Result<std::ops::Range<usize>, WireError> {
    let len = read_i32(bytes, at)?;
    if len < 5 || at + len as usize > end {
        return Err(WireError::Invalid(format!(
            "document length {len} overruns its section"
        )));
    }
    let range = at..at + len as usize;
    let doc = RawDocument::from_bytes(&bytes[range.clone()])
        .map_err(|e| WireError::Invalid(format!("invalid BSON document: {e}")))?;
    for element in doc.iter() {
        element.map_err(|e| WireError::Invalid(format!("invalid BSON element: {e}")))?;
    }
    Ok(range)
}

fn cstring_at(bytes: &[u8], at: usize, end: usize) -> Result<(String, usize), WireError> {
    let nul = bytes[at..end]
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| WireError::Invalid("unterminated string".into()))?;
    let text = std::str::from_utf8(&bytes[at..at + nul])
        .map_err(|_| WireError::Invalid("string is not UTF-8".into()))?;
    Ok((text.to_string(), at + nul + 1))
}

fn parse_request(bytes: Vec<u8>) -> Result<Request, WireError> {
    let request_id = read_i32(&bytes, 4)?;
    let op_code = read_i32(&bytes, 12)?;
    match op_code {
        OP_MSG => parse_op_msg(bytes, request_id),
        OP_QUERY => parse_op_query(bytes, request_id),
        other => Err(WireError::Invalid(format!("unsupported opCode {other}"))),
    }
}

fn parse_op_msg(bytes: Vec<u8>, request_id: i32) -> Result<Request, WireError> {
    let flags = read_i32(&bytes, HEADER_LEN)? as u32;
    let mut end = bytes.len();
    if flags & FLAG_CHECKSUM_PRESENT != 0 {
        end -= 4;
        let expected = u32::from_le_bytes(bytes[end..].try_into().expect("4 bytes"));
        let actual = crc32c::crc32c(&bytes[..end]);
        if expected != actual {
            return Err(WireError::Invalid(format!(
                "checksum mismatch: message carries {expected:#010x}, computed {actual:#010x}"
            )));
        }
    }
    // Bits 0, 1 and 16 are defined; any other bit in the low 16 is required and unknown.
    if flags & 0xffff & !(FLAG_CHECKSUM_PRESENT | FLAG_MORE_TO_COME) != 0 {
        return Err(WireError::Invalid(format!(
            "unknown required flag bits {flags:#x}"
        )));
    }
    let mut at = HEADER_LEN + 4;
    let mut body = None;
    let mut sequences = Vec::new();
    while at < end {
        let kind = bytes[at];
        at += 1;
        match kind {
            0 => {
                if body.is_some() {
                    return Err(WireError::Invalid("more than one kind-0 section".into()));
                }
                let range = document_at(&bytes, at, end)?;
                at = range.end;
                body = Some(range);
            }
            1 => {
                let size = read_i32(&bytes, at)?;
                let section_end = at + size as usize;
                if size < 5 || section_end > end {
                    return Err(WireError::Invalid(format!("section size {size} overruns")));
                }
                let (identifier, mut cursor) = cstring_at(&bytes, at + 4, section_end)?;
                let mut documents = Vec::new();
                while cursor < section_end {
                    let range = document_at(&bytes, cursor, section_end)?;
                    cursor = range.end;
                    documents.push(range);
                }
                sequences.push((identifier, documents));
                at = section_end;
            }
            other => return Err(WireError::Invalid(format!("unknown section kind {other}"))),
        }
    }
    let body = body.ok_or_else(|| WireError::Invalid("OP_MSG without a kind-0 body".into()))?;
    Ok(Request {
        request_id,
        op_code: OP_MSG,
        flags,
        bytes,
        body,
        sequences,
        legacy_database: None,
    })
}

fn parse_op_query(bytes: Vec<u8>, request_id: i32) -> Result<Request, WireError> {
    let end = bytes.len();
    let flags = read_i32(&bytes, HEADER_LEN)? as u32;
    let (collection, at) = cstring_at(&bytes, HEADER_LEN + 4, end)?;
    if !collection.ends_with(".$cmd") {
        return Err(WireError::Invalid(format!(
            "OP_QUERY is accepted only for commands, not for {collection}"
        )));
    }
    // numberToSkip and numberToReturn follow the collection name.
    let body = document_at(&bytes, at + 8, end)?;
    Ok(Request {
        request_id,
        op_code: OP_QUERY,
        flags,
        bytes,
        body,
        sequences: Vec::new(),
        legacy_database: Some(collection.trim_end_matches(".$cmd").to_string()),
    })
}

/// Frames a reply body written by [`DocBuilder::with_reply_prefix`] in place and returns the
/// bytes to send. `checksum` adds a CRC-32C trailer, mirroring a request that carried one.
pub fn frame_op_msg(mut message: Vec<u8>, response_to: i32, checksum: bool) -> Vec<u8> {
    let flags: u32 = if checksum { FLAG_CHECKSUM_PRESENT } else { 0 };
    if checksum {
        message.extend_from_slice(&[0; 4]);
    }
    let length = message.len() as i32;
    message[0..4].copy_from_slice(&length.to_le_bytes());
    message[4..8].copy_from_slice(&next_response_id().to_le_bytes());
    message[8..12].copy_from_slice(&response_to.to_le_bytes());
    message[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
    message[16..20].copy_from_slice(&flags.to_le_bytes());
    message[20] = 0;
    if checksum {
        let end = message.len() - 4;
        let crc = crc32c::crc32c(&message[..end]);
        message[end..].copy_from_slice(&crc.to_le_bytes());
    }
    message
}

/// Frames a legacy OP_REPLY carrying one document, the reply to an OP_QUERY command.
pub fn frame_op_reply(body: &[u8], response_to: i32) -> Vec<u8> {
    let length = HEADER_LEN + 20 + body.len();
    let mut message = Vec::with_capacity(length);
    message.extend_from_slice(&(length as i32).to_le_bytes());
    message.extend_from_slice(&next_response_id().to_le_bytes());
    message.extend_from_slice(&response_to.to_le_bytes());
    message.extend_from_slice(&OP_REPLY.to_le_bytes());
    message.extend_from_slice(&0i32.to_le_bytes()); // responseFlags
    message.extend_from_slice(&0i64.to_le_bytes()); // cursorID
    message.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
    message.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
    message.extend_from_slice(body);
    message
}

fn next_response_id() -> i32 {
    use std::sync::atomic::{AtomicI32, Ordering};
    static NEXT: AtomicI32 = AtomicI32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
