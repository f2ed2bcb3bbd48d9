//! `updateDescription` for update events: the fields an update set and the fields it removed.

use bson::{RawArrayBuf, RawBsonRef, RawDocument, RawDocumentBuf};

/// Compares a document before and after an update. Nested documents present on both sides are
/// compared field by field and reported with dotted paths; any other changed value, arrays
/// included, is reported whole.
pub fn update_description(before: &RawDocument, after: &RawDocument) -> RawDocumentBuf {
    let mut updated = RawDocumentBuf::new();
    let mut removed = RawArrayBuf::new();
    diff(before, after, "", &mut updated, &mut removed);
    let mut description = RawDocumentBuf::new();
    description.append("updatedFields", updated);
    description.append("removedFields", removed);
    description.append("truncatedArrays", RawArrayBuf::new());
    description
}

fn diff(
    before: &RawDocument,
    after: &RawDocument,
    prefix: &str,
    updated: &mut RawDocumentBuf,
    removed: &mut RawArrayBuf,
) {
    for (key, new_value) in after.iter().flatten() {
        let path = format!("{prefix}{key}");
        match before.get(key).ok().flatten() {
            Some(RawBsonRef::Document(old)) => {
                if let RawBsonRef::Document(new) = new_value {
                    diff(old, new, &format!("{path}."), updated, removed);
                    continue;
                }
                updated.append_ref(&path, new_value);
            }
            Some(old) if same_bytes(old, new_value) => {}
            _ => updated.append_ref(&path, new_value),
        }
    }
    for (key, _) in before.iter().flatten() {
        if after.get(key).ok().flatten().is_none() {
            removed.push(format!("{prefix}{key}"));
        }
    }
}

fn same_bytes(a: RawBsonRef<'_>, b: RawBsonRef<'_>) -> bool {
    let mut x = RawDocumentBuf::new();
    x.append_ref("v", a);
    let mut y = RawDocumentBuf::new();
    y.append_ref("v", b);
    x.as_bytes() == y.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn diff_reports_nested_paths_and_removals() {
        let before = rawdoc! { "_id": 1, "a": { "x": 1, "y": 2 }, "gone": true, "same": 5 };
        let after = rawdoc! { "_id": 1, "a": { "x": 1, "y": 3 }, "same": 5, "new": "v" };
        let description = update_description(&before, &after);
        assert_eq!(
            description,
            rawdoc! {
                "updatedFields": { "a.y": 3, "new": "v" },
                "removedFields": ["gone"],
                "truncatedArrays": [],
            }
        );
    }
}
