//! Projections for `find` and the `$project`, `$addFields` and `$unset` stages.

use bson::{RawArrayBuf, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};

use super::number::Number;
use crate::aggregate::expr::{is_truthy, Expression};
use crate::error::{CommandError, CommandResult};

/// The projection of one field.
#[derive(Clone, Debug)]
enum Node {
    Include,
    Exclude,
    Fields(Vec<(String, Node)>),
    Computed(Expression),
    Slice { skip: i64, limit: Option<i64> },
}

/// A parsed projection.
#[derive(Clone, Debug)]
pub struct Projection {
    inclusion: bool,
    include_id: bool,
    fields: Vec<(String, Node)>,
}

fn insert_path(fields: &mut Vec<(String, Node)>, path: &str, node: Node) -> CommandResult<()> {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let existing = fields.iter_mut().find(|(name, _)| name == head);
    match (rest, existing) {
        (None, None) => fields.push((head.to_string(), node)),
        (None, Some(_)) => {
            return Err(CommandError::new(
                31250,
                format!("Path collision at {path}"),
            ))
        }
        (Some(rest), Some((_, Node::Fields(children)))) => insert_path(children, rest, node)?,
        (Some(_), Some(_)) => {
            return Err(CommandError::new(
                31249,
                format!("Path collision at {path}"),
            ))
        }
        (Some(rest), None) => {
            let mut children = Vec::new();
            insert_path(&mut children, rest, node)?;
            fields.push((head.to_string(), Node::Fields(children)));
        }
    }
    Ok(())
}

fn parse_slice(value: RawBsonRef<'_>) -> CommandResult<Node> {
    let as_int = |v: RawBsonRef<'_>| Number::from_raw(v).map(|n| n.to_f64() as i64);
    match value {
        RawBsonRef::Array(array) => {
            let items: Vec<i64> = array.into_iter().flatten().filter_map(as_int).collect();
            match items.as_slice() {
                [skip, limit] if *limit > 0 => Ok(Node::Slice {
                    skip: *skip,
                    limit: Some(*limit),
                }),
                _ => Err(CommandError::new(
                    28724,
                    "First argument to $slice must be an array of two numbers, the second positive",
                )),
            }
        }
        other => match as_int(other) {
            Some(count) if count >= 0 => Ok(Node::Slice {
                skip: 0,
                limit: Some(count),
            }),
            Some(count) => Ok(Node::Slice {
                skip: count,
                limit: None,
            }),
            None => Err(CommandError::bad_value(
                "$slice only supports numbers and [skip, limit] arrays",
            )),
        },
    }
}

impl Projection {
    /// Parses a projection. `allow_nested_documents` enables `$project`'s `{a: {b: 1}}` form.
    pub fn parse(spec: &RawDocument) -> CommandResult<Projection> {
        let mut fields = Vec::new();
        let mut include_id = true;
        let mut inclusion: Option<bool> = None;
        let mut set_mode = |include: bool, path: &str| -> CommandResult<()> {
            match inclusion {
                Some(mode) if mode != include => Err(CommandError::new(
                    if include { 31253 } else { 31254 },
                    if include {
                        format!("Cannot do inclusion on field {path} in exclusion projection")
                    } else {
                        format!("Cannot do exclusion on field {path} in inclusion projection")
                    },
                )),
                _ => {
                    inclusion = Some(include);
                    Ok(())
                }
            }
        };
        for element in spec.iter() {
            let (path, value) = element?;
            let node = match value {
                RawBsonRef::Document(inner) => match inner.iter().next().transpose()? {
                    Some(("$slice", argument)) => parse_slice(argument)?,
                    Some(("$elemMatch", _)) | Some(("$meta", _)) => {
                        return Err(CommandError::new(
                            2,
                            format!(
                                "projection operator on '{path}' is not supported by this emulator"
                            ),
                        ))
                    }
                    Some((key, _)) if key.starts_with('$') => {
                        set_mode(true, path)?;
                        Node::Computed(Expression::parse(value)?)
                    }
                    _ => {
                        // A nested projection: flatten it into dotted paths.
                        let nested = Projection::parse(inner)?;
                        set_mode(nested.inclusion, path)?;
                        for (name, node) in nested.fields {
                            insert_path(&mut fields, &format!("{path}.{name}"), node)?;
                        }
                        continue;
                    }
                },
                RawBsonRef::Boolean(_)
                | RawBsonRef::Int32(_)
                | RawBsonRef::Int64(_)
                | RawBsonRef::Double(_)
                | RawBsonRef::Decimal128(_) => {
                    let include = is_truthy(Some(&value.to_raw_bson()));
                    if path == "_id" {
                        include_id = include;
                        continue;
                    }
                    set_mode(include, path)?;
                    if include {
                        Node::Include
                    } else {
                        Node::Exclude
                    }
                }
                other => {
                    set_mode(true, path)?;
                    Node::Computed(Expression::parse(other)?)
                }
            };
            insert_path(&mut fields, path, node)?;
        }
        Ok(Projection {
            // A projection of only `_id: 0` is an exclusion; of nothing at all, an inclusion
            // of everything is what callers want, which exclusion of nothing gives.
            inclusion: inclusion.unwrap_or(false),
            include_id,
            fields,
        })
    }

    /// Applies the projection to a document.
    pub fn apply(&self, document: &RawDocument) -> CommandResult<RawDocumentBuf> {
        let mut out = RawDocumentBuf::new();
        if self.inclusion {
            if self.include_id {
                if let Some(id) = document.get("_id")? {
                    out.append_ref("_id", id);
                }
            }
            include_fields(document, document, &self.fields, &mut out, true)?;
        } else {
            for element in document.iter() {
                let (key, value) = element?;
                if key == "_id" && !self.include_id {
                    continue;
                }
                match self.fields.iter().find(|(name, _)| name == key) {
                    None => out.append_ref(key, value),
                    Some((_, node)) => {
                        if let Some(kept) = exclude_node(document, value, node)? {
                            out.append(key, kept);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn slice_array(value: RawBsonRef<'_>, skip: i64, limit: Option<i64>) -> RawBson {
    let RawBsonRef::Array(array) = value else {
        return value.to_raw_bson();
    };
    let items: Vec<RawBsonRef<'_>> = array.into_iter().flatten().collect();
    let len = items.len() as i64;
    let (start, count) = match limit {
        // {$slice: -n} keeps the last n elements.
        None => ((len + skip).max(0), len),
        Some(limit) => {
            let start = if skip < 0 {
                (len + skip).max(0)
            } else {
                skip.min(len)
            };
            (start, limit)
        }
    };
    let mut out = RawArrayBuf::new();
    for item in items.iter().skip(start as usize).take(count as usize) {
        out.push(item.to_raw_bson());
    }
    RawBson::Array(out)
}

fn include_fields(
    root: &RawDocument,
    document: &RawDocument,
    fields: &[(String, Node)],
    out: &mut RawDocumentBuf,
    top: bool,
) -> CommandResult<()> {
    for element in document.iter() {
        let (key, value) = element?;
        if top && key == "_id" {
            continue;
        }
        let Some((_, node)) = fields.iter().find(|(name, _)| name == key) else {
            continue;
        };
        match node {
            Node::Include => out.append_ref(key, value),
            Node::Slice { skip, limit } => out.append(key, slice_array(value, *skip, *limit)),
            Node::Fields(children) => match value {
                RawBsonRef::Document(inner) => {
                    let mut nested = RawDocumentBuf::new();
                    include_fields(root, inner, children, &mut nested, false)?;
                    out.append(key, nested);
                }
                RawBsonRef::Array(array) => {
                    let mut nested = RawArrayBuf::new();
                    for item in array.into_iter().flatten() {
                        if let RawBsonRef::Document(inner) = item {
                            let mut projected = RawDocumentBuf::new();
                            include_fields(root, inner, children, &mut projected, false)?;
                            nested.push(projected);
                        }
                    }
                    out.append(key, nested);
                }
                _ => {}
            },
            Node::Computed(_) | Node::Exclude => {}
        }
    }
    // Computed fields follow the included ones, in projection order.
    for (name, node) in fields {
        match node {
            Node::Computed(expression) => {
                if let Some(value) = expression.evaluate(root)? {
                    out.append(name, value);
                }
            }
            Node::Fields(children)
                if document.get(name)?.is_none()
                    && children.iter().any(|(_, n)| matches!(n, Node::Computed(_))) =>
            {
                let mut nested = RawDocumentBuf::new();
                include_fields(root, &RawDocumentBuf::new(), children, &mut nested, false)?;
                out.append(name, nested);
            }
            _ => {}
        }
    }
    Ok(())
}

fn exclude_node(
    root: &RawDocument,
    value: RawBsonRef<'_>,
    node: &Node,
) -> CommandResult<Option<RawBson>> {
    Ok(match node {
        Node::Exclude => None,
        Node::Include | Node::Computed(_) => Some(value.to_raw_bson()),
        Node::Slice { skip, limit } => Some(slice_array(value, *skip, *limit)),
        Node::Fields(children) => Some(match value {
            RawBsonRef::Document(inner) => {
                RawBson::Document(exclude_fields(root, inner, children)?)
            }
            RawBsonRef::Array(array) => {
                let mut nested = RawArrayBuf::new();
                for item in array.into_iter().flatten() {
                    match item {
                        RawBsonRef::Document(inner) => {
                            nested.push(exclude_fields(root, inner, children)?)
                        }
                        other => nested.push(other.to_raw_bson()),
                    }
                }
                RawBson::Array(nested)
            }
            other => other.to_raw_bson(),
        }),
    })
}

fn exclude_fields(
    root: &RawDocument,
    document: &RawDocument,
    fields: &[(String, Node)],
) -> CommandResult<RawDocumentBuf> {
    let mut out = RawDocumentBuf::new();
    for element in document.iter() {
        let (key, value) = element?;
        match fields.iter().find(|(name, _)| name == key) {
            None => out.append_ref(key, value),
            Some((_, node)) => {
                if let Some(kept) = exclude_node(root, value, node)? {
                    out.append(key, kept);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn project(spec: RawDocumentBuf, document: RawDocumentBuf) -> RawDocumentBuf {
        Projection::parse(&spec).unwrap().apply(&document).unwrap()
    }

    #[test]
    fn inclusion_keeps_document_order_and_id() {
        let document = rawdoc! { "_id": 1, "b": 2, "a": 1, "c": 3 };
        assert_eq!(
            project(rawdoc! { "a": 1, "b": 1 }, document.clone()),
            rawdoc! { "_id": 1, "b": 2, "a": 1 }
        );
        assert_eq!(
            project(rawdoc! { "a": 1, "_id": 0 }, document),
            rawdoc! { "a": 1 }
        );
    }

    #[test]
    fn exclusion_of_dotted_path() {
        let document = rawdoc! { "_id": 1, "a": { "x": 1, "y": 2 }, "b": 1 };
        assert_eq!(
            project(rawdoc! { "a.x": 0 }, document),
            rawdoc! { "_id": 1, "a": { "y": 2 }, "b": 1 }
        );
    }

    #[test]
    fn computed_fields_and_slice() {
        let document = rawdoc! { "_id": 1, "a": 2, "list": [1, 2, 3] };
        assert_eq!(
            project(
                rawdoc! { "double": { "$multiply": ["$a", 2] }, "list": { "$slice": -2 } },
                document
            ),
            rawdoc! { "_id": 1, "list": [2, 3], "double": 4 }
        );
    }

    #[test]
    fn mixing_modes_is_rejected() {
        let error = Projection::parse(&rawdoc! { "a": 1, "b": 0 }).unwrap_err();
        assert_eq!(error.code, 31254);
    }
}
