//! A BSON document writer that appends straight into an outgoing message buffer.
//!
//! Cursor replies carry up to 16 MB of stored documents. Writing them through `RawDocumentBuf`
//! and `RawArrayBuf` would copy every document once per nesting level, so replies are written
//! here instead: each stored document is copied exactly once, into the bytes that go on the wire.

use bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use super::OP_MSG_PREFIX_LEN;

/// An open BSON document (with nested documents and arrays) being written into a byte buffer.
pub struct DocBuilder {
    bytes: Vec<u8>,
    /// Offset of every open document's length prefix, the outermost first.
    open: Vec<usize>,
    /// Offset where the outermost document starts (after any message prefix).
    start: usize,
}

impl DocBuilder {
    /// Starts a document preceded by room for an OP_MSG header, flags and section kind, so the
    /// connection can frame the reply without copying it.
    pub fn with_reply_prefix() -> Self {
        let mut bytes = Vec::with_capacity(256);
        bytes.resize(OP_MSG_PREFIX_LEN, 0);
        let mut builder = DocBuilder {
            bytes,
            open: Vec::new(),
            start: OP_MSG_PREFIX_LEN,
        };
        builder.open_document();
        builder
    }

    /// Starts a reply from the elements of an existing document.
    pub fn from_document(document: &RawDocument) -> Self {
        let mut builder = Self::with_reply_prefix();
        builder.append_elements(document);
        builder
    }

    fn open_document(&mut self) {
        self.open.push(self.bytes.len());
        self.bytes.extend_from_slice(&[0; 4]);
    }

    fn key(&mut self, element_type: u8, key: &str) {
        self.bytes.push(element_type);
        self.bytes.extend_from_slice(key.as_bytes());
        self.bytes.push(0);
    }

    /// Opens a nested document under `key`; close it with [`DocBuilder::end`].
    pub fn start_document(&mut self, key: &str) {
        self.key(0x03, key);
        self.open_document();
    }

    /// Opens a nested array under `key`; its elements must use keys "0", "1", ...
    pub fn start_array(&mut self, key: &str) {
        self.key(0x04, key);
        self.open_document();
    }

    /// Closes the innermost open document or array.
    pub fn end(&mut self) {
        let at = self.open.pop().expect("a document is open");
        self.bytes.push(0);
        let length = (self.bytes.len() - at) as i32;
        self.bytes[at..at + 4].copy_from_slice(&length.to_le_bytes());
    }

    pub fn append_document(&mut self, key: &str, document: &RawDocument) {
        self.key(0x03, key);
        self.bytes.extend_from_slice(document.as_bytes());
    }

    pub fn append_i64(&mut self, key: &str, value: i64) {
        self.key(0x12, key);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn append_i32(&mut self, key: &str, value: i32) {
        self.key(0x10, key);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn append_f64(&mut self, key: &str, value: f64) {
        self.key(0x01, key);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn append_bool(&mut self, key: &str, value: bool) {
        self.key(0x08, key);
        self.bytes.push(value as u8);
    }

    pub fn append_str(&mut self, key: &str, value: &str) {
        self.key(0x02, key);
        self.bytes
            .extend_from_slice(&((value.len() + 1) as i32).to_le_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        self.bytes.push(0);
    }

    /// Appends any value by encoding it through a one-element document. Used for the small,
    /// rarely written values; hot paths use the typed methods above.
    pub fn append_value(&mut self, key: &str, value: RawBsonRef<'_>) {
        let mut single = RawDocumentBuf::new();
        single.append_ref(key, value);
        self.append_elements(&single);
    }

    /// Appends every element of `document` to the innermost open document.
    pub fn append_elements(&mut self, document: &RawDocument) {
        let bytes = document.as_bytes();
        self.bytes.extend_from_slice(&bytes[4..bytes.len() - 1]);
    }

    /// Bytes written so far for the reply document, used to keep batches under the size limit.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the outermost document and returns the message bytes, prefix included.
    pub fn finish(mut self) -> Vec<u8> {
        while !self.open.is_empty() {
            self.end();
        }
        self.bytes
    }

    /// Returns the finished document without the message prefix.
    pub fn finish_document(self) -> RawDocumentBuf {
        let start = self.start;
        let bytes = self.finish();
        RawDocumentBuf::from_bytes(bytes[start..].to_vec()).expect("builder writes valid BSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn builder_writes_nested_cursor_reply() {
        let stored = rawdoc! { "_id": 1, "x": "y" };
        let mut builder = DocBuilder::with_reply_prefix();
        builder.start_document("cursor");
        builder.start_array("firstBatch");
        builder.append_document("0", &stored);
        builder.end();
        builder.append_i64("id", 0);
        builder.append_str("ns", "db.c");
        builder.end();
        builder.append_f64("ok", 1.0);
        let document = builder.finish_document();
        let expected = rawdoc! {
            "cursor": { "firstBatch": [ { "_id": 1, "x": "y" } ], "id": 0i64, "ns": "db.c" },
            "ok": 1.0,
        };
        assert_eq!(document, expected);
    }
}
