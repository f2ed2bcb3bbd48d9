//! Dotted-path lookup with MongoDB's implicit array traversal.

use bson::{RawBsonRef, RawDocument};

/// Collects the values a dotted `path` reaches in `document`. `None` entries stand for a branch
/// where the path is missing. Arrays met before the last component are traversed: a numeric
/// component indexes into the array, any other component is looked up in every document element.
pub fn lookup<'a>(document: &'a RawDocument, path: &str, out: &mut Vec<Option<RawBsonRef<'a>>>) {
    let parts: Vec<&str> = path.split('.').collect();
    lookup_parts(document, &parts, out);
}

fn lookup_parts<'a>(
    document: &'a RawDocument,
    parts: &[&str],
    out: &mut Vec<Option<RawBsonRef<'a>>>,
) {
    match document.get(parts[0]).ok().flatten() {
        None => out.push(None),
        Some(value) if parts.len() == 1 => out.push(Some(value)),
        Some(value) => descend(value, &parts[1..], out),
    }
}

fn descend<'a>(value: RawBsonRef<'a>, rest: &[&str], out: &mut Vec<Option<RawBsonRef<'a>>>) {
    match value {
        RawBsonRef::Document(inner) => lookup_parts(inner, rest, out),
        RawBsonRef::Array(array) => {
            let before = out.len();
            if let Ok(index) = rest[0].parse::<usize>() {
                if let Some(element) = array.get(index).ok().flatten() {
                    if rest.len() == 1 {
                        out.push(Some(element));
                    } else {
                        descend(element, &rest[1..], out);
                    }
                }
            }
            for element in array.into_iter().flatten() {
                if let RawBsonRef::Document(inner) = element {
                    lookup_parts(inner, rest, out);
                }
            }
            if out.len() == before {
                out.push(None);
            }
        }
        _ => out.push(None),
    }
}

/// Returns the first value at a dotted path without array traversal, as aggregation field paths
/// and index keys read it when the path holds no arrays.
pub fn get_path<'a>(document: &'a RawDocument, path: &str) -> Option<RawBsonRef<'a>> {
    let mut current = document;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = current.get(part).ok().flatten()?;
        if parts.peek().is_none() {
            return Some(value);
        }
        match value {
            RawBsonRef::Document(inner) => current = inner,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn lookup_traverses_arrays_of_documents() {
        let document = rawdoc! { "a": [ { "b": 1 }, { "c": 2 }, { "b": 3 } ] };
        let mut out = Vec::new();
        lookup(&document, "a.b", &mut out);
        assert_eq!(
            out,
            vec![Some(RawBsonRef::Int32(1)), None, Some(RawBsonRef::Int32(3))]
        );
    }

    #[test]
    fn lookup_indexes_arrays_by_position() {
        let document = rawdoc! { "a": [ 10, 20 ] };
        let mut out = Vec::new();
        lookup(&document, "a.1", &mut out);
        assert_eq!(out, vec![Some(RawBsonRef::Int32(20))]);
    }

    #[test]
    fn lookup_reports_missing() {
        let document = rawdoc! { "a": 1 };
        let mut out = Vec::new();
        lookup(&document, "a.b", &mut out);
        assert_eq!(out, vec![None]);
    }
}
