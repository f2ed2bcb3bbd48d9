//! Wire-level checks over a raw socket: OP_MSG checksums, kind-1 sequences, moreToCome and the
//! legacy OP_QUERY handshake.

mod common;

use bson::{doc, rawdoc, Document, RawDocumentBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OP_MSG: i32 = 2013;

/// Builds an OP_MSG with a body and optional kind-1 sequence, flags and CRC-32C trailer.
fn op_msg(
    request_id: i32,
    flags: u32,
    body: &RawDocumentBuf,
    sequence: Option<(&str, &[RawDocumentBuf])>,
) -> Vec<u8> {
    let mut message = vec![0u8; 16];
    message.extend_from_slice(&flags.to_le_bytes());
    message.push(0);
    message.extend_from_slice(body.as_bytes());
    if let Some((identifier, documents)) = sequence {
        let mut section = Vec::new();
        section.extend_from_slice(identifier.as_bytes());
        section.push(0);
        for document in documents {
            section.extend_from_slice(document.as_bytes());
        }
        message.push(1);
        message.extend_from_slice(&((section.len() + 4) as i32).to_le_bytes());
        message.extend_from_slice(&section);
    }
    let checksum = flags & 1 != 0;
    let length = message.len() + if checksum { 4 } else { 0 };
    message[0..4].copy_from_slice(&(length as i32).to_le_bytes());
    message[4..8].copy_from_slice(&request_id.to_le_bytes());
    message[12..16].copy_from_slice(&OP_MSG.to_le_bytes());
    if checksum {
        let crc = crc32c::crc32c(&message);
        message.extend_from_slice(&crc.to_le_bytes());
    }
    message
}

/// Reads one reply and returns its flags and body.
async fn read_reply(stream: &mut TcpStream) -> (u32, Document) {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.unwrap();
    let length = i32::from_le_bytes(length) as usize;
    let mut rest = vec![0u8; length - 4];
    stream.read_exact(&mut rest).await.unwrap();
    let mut message = length.to_le_bytes()[..4].to_vec();
    message.extend_from_slice(&rest);
    let flags = u32::from_le_bytes(message[16..20].try_into().unwrap());
    let end = if flags & 1 != 0 {
        let crc = u32::from_le_bytes(message[length - 4..].try_into().unwrap());
        assert_eq!(
            crc,
            crc32c::crc32c(&message[..length - 4]),
            "reply checksum is valid"
        );
        length - 4
    } else {
        length
    };
    assert_eq!(message[20], 0, "reply is a single kind-0 section");
    let body = Document::from_reader(&message[21..end]).unwrap();
    (flags, body)
}

#[tokio::test]
async fn checksummed_request_gets_checksummed_reply() {
    let (emulator, _client) = common::start_default().await;
    let mut stream = TcpStream::connect(("127.0.0.1", emulator.port()))
        .await
        .unwrap();
    let body = rawdoc! { "ping": 1, "$db": "admin" };
    stream.write_all(&op_msg(1, 1, &body, None)).await.unwrap();
    let (flags, reply) = read_reply(&mut stream).await;
    assert_eq!(flags & 1, 1);
    assert_eq!(reply.get_f64("ok"), Ok(1.0));
}

#[tokio::test]
async fn bad_checksum_closes_connection() {
    let (emulator, _client) = common::start_default().await;
    let mut stream = TcpStream::connect(("127.0.0.1", emulator.port()))
        .await
        .unwrap();
    let body = rawdoc! { "ping": 1, "$db": "admin" };
    let mut message = op_msg(1, 1, &body, None);
    let last = message.len() - 1;
    message[last] ^= 0xff;
    stream.write_all(&message).await.unwrap();
    let mut buffer = [0u8; 1];
    let read = stream.read(&mut buffer).await.unwrap_or(0);
    assert_eq!(read, 0, "the server closes the connection without replying");
}

#[tokio::test]
async fn more_to_come_write_sends_no_reply() {
    let (emulator, _client) = common::start_default().await;
    let mut stream = TcpStream::connect(("127.0.0.1", emulator.port()))
        .await
        .unwrap();
    let insert = rawdoc! { "insert": "c", "$db": "wire", "writeConcern": { "w": 0 } };
    let documents = [rawdoc! { "_id": 1 }, rawdoc! { "_id": 2 }];
    stream
        .write_all(&op_msg(1, 2, &insert, Some(("documents", &documents))))
        .await
        .unwrap();
    // The next reply must be the count's, which proves the insert got no reply.
    let count = rawdoc! { "count": "c", "$db": "wire" };
    stream.write_all(&op_msg(2, 0, &count, None)).await.unwrap();
    let mut header = [0u8; 16];
    stream.peek(&mut header).await.unwrap();
    let response_to = i32::from_le_bytes(header[8..12].try_into().unwrap());
    assert_eq!(response_to, 2);
    let (_, reply) = read_reply(&mut stream).await;
    assert_eq!(reply.get_i32("n"), Ok(2));
}

#[tokio::test]
async fn legacy_op_query_handshake_gets_reply() {
    let (emulator, _client) = common::start_default().await;
    let mut stream = TcpStream::connect(("127.0.0.1", emulator.port()))
        .await
        .unwrap();
    let query = doc! { "isMaster": 1, "helloOk": true };
    let mut body = Vec::new();
    query.to_writer(&mut body).unwrap();
    let mut message = vec![0u8; 16];
    message.extend_from_slice(&0i32.to_le_bytes());
    message.extend_from_slice(b"admin.$cmd\0");
    message.extend_from_slice(&0i32.to_le_bytes());
    message.extend_from_slice(&(-1i32).to_le_bytes());
    message.extend_from_slice(&body);
    let length = message.len() as i32;
    message[0..4].copy_from_slice(&length.to_le_bytes());
    message[4..8].copy_from_slice(&7i32.to_le_bytes());
    message[12..16].copy_from_slice(&2004i32.to_le_bytes());
    stream.write_all(&message).await.unwrap();

    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.unwrap();
    let mut rest = vec![0u8; i32::from_le_bytes(length) as usize - 4];
    stream.read_exact(&mut rest).await.unwrap();
    assert_eq!(
        i32::from_le_bytes(rest[8..12].try_into().unwrap()),
        1,
        "OP_REPLY"
    );
    assert_eq!(
        i32::from_le_bytes(rest[4..8].try_into().unwrap()),
        7,
        "responseTo"
    );
    let reply = Document::from_reader(&rest[32..]).unwrap();
    assert_eq!(reply.get_bool("ismaster"), Ok(true));
}

#[tokio::test]
async fn shutdown_closes_listener_and_connections() {
    let (emulator, _client) = common::start_default().await;
    let port = emulator.port();
    let mut open = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    emulator.shutdown().await;
    let mut buffer = [0u8; 1];
    let read = open.read(&mut buffer).await.unwrap_or(0);
    assert_eq!(read, 0, "open connections are closed");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the listener is closed"
    );
}
