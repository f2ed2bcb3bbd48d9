//! An order-independent digest of a set of documents.
//!
//! Each document's BSON bytes are hashed with SHA-256 and the hashes are added as 256-bit
//! unsigned integers modulo 2^256. Addition is commutative and associative, so the digest does
//! not depend on the order in which documents are read, and the partial digests of a side read
//! over several task runs add up to the digest of the whole side. XOR would also be
//! order-independent, but two equal hashes cancel under XOR, while a sum keeps them.
//!
//! Any changed byte (a value, a type tag, the field order) changes that document's hash and so
//! the sum. An accidental change goes unnoticed with probability about 2^-256. NOTE: sums of
//! hashes can be forged on purpose with a generalised birthday search, so the digest guards
//! against faults of the copy, not against someone who chooses the data on both sides.

use sha2::{Digest, Sha256};

/// The sum of the SHA-256 hashes of a set of documents, modulo 2^256.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetDigest {
    /// Little-endian 64-bit limbs: `limbs[0]` contains the lowest bits.
    limbs: [u64; 4],
}

impl SetDigest {
    /// Adds one document, given its BSON bytes.
    pub fn add_document(&mut self, bytes: &[u8]) {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        self.add_hash(&hash);
    }

    /// Adds a 256-bit hash read as a big-endian number.
    pub fn add_hash(&mut self, hash: &[u8; 32]) {
        let mut carry = false;
        for (i, limb) in self.limbs.iter_mut().enumerate() {
            let start = 32 - 8 * (i + 1);
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&hash[start..start + 8]);
            let (sum, overflow_a) = limb.overflowing_add(u64::from_be_bytes(bytes));
            let (sum, overflow_b) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = overflow_a || overflow_b;
        }
    }

    /// Formats the digest as 64 lowercase hex digits, most significant first.
    pub fn to_hex(&self) -> String {
        self.limbs
            .iter()
            .rev()
            .map(|limb| format!("{limb:016x}"))
            .collect()
    }

    /// Reads a digest written by [`SetDigest::to_hex`]; the empty string is the empty set.
    pub fn from_hex(text: &str) -> Option<SetDigest> {
        if text.is_empty() {
            return Some(SetDigest::default());
        }
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let start = 64 - 16 * (i + 1);
            *limb = u64::from_str_radix(&text[start..start + 16], 16).ok()?;
        }
        Some(SetDigest { limbs })
    }
}

/// Hashes one document's bytes with SHA-256.
pub fn document_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Document};

    fn bytes(document: &Document) -> Vec<u8> {
        let mut out = Vec::new();
        document.to_writer(&mut out).unwrap();
        out
    }

    fn digest_of(documents: &[Document]) -> SetDigest {
        let mut digest = SetDigest::default();
        for document in documents {
            digest.add_document(&bytes(document));
        }
        digest
    }

    #[test]
    fn order_does_not_matter() {
        let docs = [
            doc! { "_id": 1, "a": "x" },
            doc! { "_id": 2, "a": "y" },
            doc! { "_id": 3, "a": "z" },
        ];
        let forward = digest_of(&docs);
        let reversed = digest_of(&[docs[2].clone(), docs[0].clone(), docs[1].clone()]);
        assert_eq!(forward, reversed);
    }

    #[test]
    fn partial_digests_add_up() {
        let docs: Vec<Document> = (0..10).map(|i| doc! { "_id": i }).collect();
        let whole = digest_of(&docs);
        let mut resumed = digest_of(&docs[..4]);
        for document in &docs[4..] {
            resumed.add_document(&bytes(document));
        }
        assert_eq!(resumed, whole);
        let restored = SetDigest::from_hex(&digest_of(&docs[..4]).to_hex()).unwrap();
        assert_eq!(restored, digest_of(&docs[..4]));
    }

    #[test]
    fn type_and_field_order_change_digest() {
        let base = digest_of(&[doc! { "_id": 1, "n": 1i32, "s": "a" }]);
        let variants = [
            doc! { "_id": 1, "n": 1i64, "s": "a" },
            doc! { "_id": 1, "n": 1.0f64, "s": "a" },
            doc! { "_id": 1, "s": "a", "n": 1i32 },
            doc! { "_id": 1, "n": 1i32, "s": "b" },
        ];
        for variant in variants {
            assert_ne!(digest_of(std::slice::from_ref(&variant)), base, "{variant}");
        }
    }

    #[test]
    fn equal_documents_do_not_cancel() {
        let one = doc! { "_id": 1 };
        assert_ne!(digest_of(&[one.clone(), one]), SetDigest::default());
    }

    #[test]
    fn carry_crosses_limbs() {
        let mut digest = SetDigest::default();
        let mut low_ones = [0u8; 32];
        low_ones[24..].copy_from_slice(&[0xff; 8]);
        digest.add_hash(&low_ones);
        let mut one = [0u8; 32];
        one[31] = 1;
        digest.add_hash(&one);
        assert_eq!(
            digest.to_hex(),
            format!("{}{}{}", "0".repeat(32), "0000000000000001", "0".repeat(16))
        );
    }

    #[test]
    fn sum_wraps_modulo_two_to_256() {
        let mut digest = SetDigest::default();
        digest.add_hash(&[0xff; 32]);
        let mut one = [0u8; 32];
        one[31] = 1;
        digest.add_hash(&one);
        assert_eq!(digest, SetDigest::default());
    }

    #[test]
    fn hex_is_validated() {
        assert_eq!(SetDigest::from_hex(""), Some(SetDigest::default()));
        assert!(SetDigest::from_hex("xyz").is_none());
        assert!(SetDigest::from_hex(&"g".repeat(64)).is_none());
    }
}
