//! Array update operators: `$push` with its modifiers, `$addToSet`, `$pull` and `$pullAll`,
//! plus the array lookup `$pop` shares with them.

use std::cmp::Ordering;

use bson::{Bson, Document, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};

use super::filter::{Filter, Predicate};
use super::order::compare_owned;
use super::sort::SortSpec;
use super::update::{get_path, set_path, to_raw};
use crate::error::{CommandError, CommandResult};

pub(super) fn get_array_mut<'a>(
    document: &'a mut Document,
    path: &str,
    operator: &str,
) -> CommandResult<Option<&'a mut Vec<Bson>>> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return Ok(None);
    };
    let Some(mut current) = document.get_mut(first) else {
        return Ok(None);
    };
    for part in parts {
        current = match current {
            Bson::Document(d) => match d.get_mut(part) {
                Some(v) => v,
                None => return Ok(None),
            },
            Bson::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
    }
    match current {
        Bson::Array(items) => Ok(Some(items)),
        other => Err(CommandError::type_mismatch(format!(
            "{operator} requires an array, but the field '{path}' contains {other}"
        ))),
    }
}

pub(super) fn push(
    document: &mut Document,
    operator: &str,
    path: &str,
    argument: &Bson,
) -> CommandResult<()> {
    let (items, modifiers) = match argument {
        Bson::Document(spec) if spec.contains_key("$each") => {
            let Some(Bson::Array(each)) = spec.get("$each") else {
                return Err(CommandError::bad_value(
                    "The argument to $each must be an array",
                ));
            };
            (each.clone(), Some(spec))
        }
        other => (vec![other.clone()], None),
    };
    if get_path(document, path).is_none() {
        set_path(document, path, Bson::Array(Vec::new()))?;
    }
    let array = get_array_mut(document, path, operator)?.expect("created above");
    if operator == "$addToSet" {
        for item in items {
            let raw = to_raw(&item)?;
            let present = array.iter().any(|existing| {
                to_raw(existing).is_ok_and(|e| compare_owned(&e, &raw) == Ordering::Equal)
            });
            if !present {
                array.push(item);
            }
        }
        return Ok(());
    }
    let position = modifiers
        .and_then(|m| m.get("$position"))
        .and_then(|p| match p {
            Bson::Int32(v) => Some(*v as i64),
            Bson::Int64(v) => Some(*v),
            Bson::Double(v) => Some(*v as i64),
            _ => None,
        });
    match position {
        Some(p) => {
            let len = array.len() as i64;
            let at = if p < 0 { (len + p).max(0) } else { p.min(len) } as usize;
            for (offset, item) in items.into_iter().enumerate() {
                array.insert(at + offset, item);
            }
        }
        None => array.extend(items),
    }
    if let Some(sort) = modifiers.and_then(|m| m.get("$sort")) {
        sort_array(array, sort)?;
    }
    if let Some(slice) = modifiers.and_then(|m| m.get("$slice")) {
        let limit = match slice {
            Bson::Int32(v) => *v as i64,
            Bson::Int64(v) => *v,
            Bson::Double(v) => *v as i64,
            _ => {
                return Err(CommandError::bad_value(
                    "The value for $slice must be an integer",
                ))
            }
        };
        let len = array.len() as i64;
        if limit >= 0 {
            array.truncate(limit as usize);
        } else if -limit < len {
            array.drain(0..(len + limit) as usize);
        }
    }
    Ok(())
}

fn sort_array(array: &mut [Bson], sort: &Bson) -> CommandResult<()> {
    let raw: Vec<RawBson> = array.iter().map(to_raw).collect::<CommandResult<_>>()?;
    let mut order: Vec<usize> = (0..array.len()).collect();
    match sort {
        Bson::Document(spec) => {
            let spec = SortSpec::parse(&RawDocumentBuf::from_document(spec)?)?;
            let empty = RawDocumentBuf::new();
            let docs: Vec<&RawDocument> = raw
                .iter()
                .map(|v| v.as_document().unwrap_or(&empty))
                .collect();
            order.sort_by(|a, b| spec.compare_keys(&spec.key_of(docs[*a]), &spec.key_of(docs[*b])));
        }
        direction => {
            let descending = matches!(direction, Bson::Int32(-1) | Bson::Int64(-1))
                || matches!(direction, Bson::Double(d) if *d == -1.0);
            order.sort_by(|a, b| {
                let o = compare_owned(&raw[*a], &raw[*b]);
                if descending {
                    o.reverse()
                } else {
                    o
                }
            });
        }
    }
    let sorted: Vec<Bson> = order.into_iter().map(|i| array[i].clone()).collect();
    array.clone_from_slice(&sorted);
    Ok(())
}

pub(super) fn pull(
    document: &mut Document,
    operator: &str,
    path: &str,
    argument: &Bson,
) -> CommandResult<()> {
    enum Condition {
        Values(Vec<RawBson>),
        Filter(Filter),
        Predicates(Vec<Predicate>),
    }
    let condition = match (operator, argument) {
        ("$pullAll", Bson::Array(values)) => {
            Condition::Values(values.iter().map(to_raw).collect::<CommandResult<_>>()?)
        }
        ("$pullAll", _) => {
            return Err(CommandError::bad_value(
                "$pullAll requires an array argument",
            ))
        }
        (_, Bson::Document(spec)) => {
            let raw = RawDocumentBuf::from_document(spec)?;
            let operator_form = spec.keys().next().is_some_and(|k| k.starts_with('$'));
            if operator_form {
                Condition::Predicates(super::filter::parse_field_value(RawBsonRef::Document(
                    &raw,
                ))?)
            } else {
                Condition::Filter(Filter::parse(&raw)?)
            }
        }
        (_, other) => Condition::Values(vec![to_raw(other)?]),
    };
    let Some(array) = get_array_mut(document, path, operator)? else {
        return Ok(());
    };
    let mut kept = Vec::with_capacity(array.len());
    for item in array.drain(..) {
        let raw = to_raw(&item)?;
        let remove = match &condition {
            Condition::Values(values) => values
                .iter()
                .any(|v| compare_owned(v, &raw) == Ordering::Equal),
            Condition::Filter(filter) => raw.as_document().is_some_and(|d| filter.matches(d)),
            Condition::Predicates(predicates) => {
                let values = [Some(raw.as_raw_bson_ref())];
                predicates.iter().all(|p| p.matches(&values))
            }
        };
        if !remove {
            kept.push(item);
        }
    }
    *array = kept;
    Ok(())
}
