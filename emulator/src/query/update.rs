//! Update documents: replacements and the update operators (`$set`, `$unset`, `$inc`, `$mul`,
//! `$min`, `$max`, `$rename`, `$push`, `$addToSet`, `$pop`, `$pull`, `$pullAll`, `$currentDate`,
//! `$setOnInsert`), applied to a decoded document.

use std::cmp::Ordering;

use bson::{Bson, DateTime, Document, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};

use super::order::compare_owned;
use super::update_array::{get_array_mut, pull, push};
use crate::aggregate::arith;
use crate::aggregate::expr::Operator;
use crate::error::{code, CommandError, CommandResult};

/// A parsed update: either a whole replacement document or a list of operator applications.
#[derive(Debug)]
pub enum Update {
    Replacement(RawDocumentBuf),
    Operators(Vec<(String, String, Bson)>),
}

const OPERATORS: &[&str] = &[
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$push",
    "$addToSet",
    "$pop",
    "$pull",
    "$pullAll",
    "$currentDate",
    "$setOnInsert",
];

fn path_not_viable(message: String) -> CommandError {
    CommandError::new(28, message).with_code_name("PathNotViable")
}

impl Update {
    pub fn parse(update: RawBsonRef<'_>) -> CommandResult<Update> {
        let document = match update {
            RawBsonRef::Document(document) => document,
            RawBsonRef::Array(_) => {
                return Err(CommandError::new(
                    code::COMMAND_NOT_SUPPORTED,
                    "pipeline-style updates are not supported by this emulator",
                ))
            }
            _ => return Err(CommandError::failed_to_parse("update must be an object")),
        };
        let first = document.iter().next().transpose()?;
        let Some((first_key, _)) = first else {
            return Ok(Update::Replacement(document.to_raw_document_buf()));
        };
        if !first_key.starts_with('$') {
            for element in document.iter() {
                let (key, _) = element?;
                if key.starts_with('$') {
                    return Err(CommandError::new(
                        52,
                        format!("The dollar ($) prefixed field '{key}' in '{key}' is not allowed in the context of an update's replacement document."),
                    ));
                }
            }
            return Ok(Update::Replacement(document.to_raw_document_buf()));
        }
        let mut operations = Vec::new();
        let mut paths: Vec<String> = Vec::new();
        for element in document.iter() {
            let (operator, argument) = element?;
            if !OPERATORS.contains(&operator) {
                return Err(CommandError::failed_to_parse(format!(
                    "Unknown modifier: {operator}. Expected a valid update modifier or pipeline-style update specified as an array"
                )));
            }
            let RawBsonRef::Document(fields) = argument else {
                return Err(CommandError::failed_to_parse(format!(
                    "Modifiers operate on fields but we found type {:?} instead.",
                    argument.element_type()
                )));
            };
            for field in fields.iter() {
                let (path, value) = field?;
                if path.contains(".$") || path == "$" {
                    return Err(CommandError::new(
                        code::COMMAND_NOT_SUPPORTED,
                        format!(
                            "positional update path '{path}' is not supported by this emulator"
                        ),
                    ));
                }
                let mut touched = vec![path.to_string()];
                if operator == "$rename" {
                    let RawBsonRef::String(target) = value else {
                        return Err(CommandError::bad_value(
                            "The 'to' field for $rename must be a string",
                        ));
                    };
                    touched.push(target.to_string());
                }
                for path in touched {
                    if let Some(other) = paths.iter().find(|p| paths_conflict(p, &path)) {
                        return Err(CommandError::new(
                            code::CONFLICTING_UPDATE_OPERATORS,
                            format!(
                                "Updating the path '{path}' would create a conflict at '{other}'"
                            ),
                        ));
                    }
                    paths.push(path);
                }
                operations.push((
                    operator.to_string(),
                    path.to_string(),
                    Bson::try_from(value.to_raw_bson())?,
                ));
            }
        }
        Ok(Update::Operators(operations))
    }

    /// Applies the update to `current` and returns the new document. `inserting` enables
    /// `$setOnInsert` (an upsert creating the document).
    pub fn apply(&self, current: &RawDocument, inserting: bool) -> CommandResult<RawDocumentBuf> {
        let original_id = current.get("_id")?.map(|v| v.to_raw_bson());
        let result = match self {
            Update::Replacement(replacement) => {
                let mut out = RawDocumentBuf::new();
                match (&original_id, replacement.get("_id")?) {
                    (Some(id), Some(new_id)) => {
                        if compare_owned(id, &new_id.to_raw_bson()) != Ordering::Equal {
                            return Err(immutable_id_error());
                        }
                        out.append("_id", id.clone());
                    }
                    (Some(id), None) => out.append("_id", id.clone()),
                    (None, Some(new_id)) => out.append_ref("_id", new_id),
                    (None, None) => {}
                }
                for element in replacement.iter() {
                    let (key, value) = element?;
                    if key != "_id" {
                        out.append_ref(key, value);
                    }
                }
                out
            }
            Update::Operators(operations) => {
                let mut document = bson::Document::try_from(current)?;
                for (operator, path, argument) in operations {
                    apply_operator(&mut document, operator, path, argument, inserting)?;
                }
                RawDocumentBuf::from_document(&document)?
            }
        };
        if let Some(id) = original_id {
            let new_id = result.get("_id")?.map(|v| v.to_raw_bson());
            if new_id.is_none_or(|n| compare_owned(&n, &id) != Ordering::Equal) {
                return Err(immutable_id_error());
            }
        }
        Ok(result)
    }

    pub fn is_replacement(&self) -> bool {
        matches!(self, Update::Replacement(_))
    }
}

impl CommandError {
    fn with_code_name(mut self, name: &str) -> Self {
        self.code_name = name.to_string();
        self
    }
}

fn immutable_id_error() -> CommandError {
    CommandError::new(
        code::IMMUTABLE_FIELD,
        "Performing an update on the path '_id' would modify the immutable field '_id'",
    )
}

fn paths_conflict(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

/// Returns the value at a dotted path, indexing arrays by position.
pub fn get_path<'a>(document: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut current = document.get(parts.next()?)?;
    for part in parts {
        current = match current {
            Bson::Document(d) => d.get(part)?,
            Bson::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Sets the value at a dotted path, creating missing documents and padding arrays with null.
pub fn set_path(document: &mut Document, path: &str, value: Bson) -> CommandResult<()> {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last().expect("split yields one part");
    let mut container = ContainerMut::Document(document);
    for part in parents {
        container = container.child(part, path)?;
    }
    container.set(last, value, path)
}

/// Removes the value at a dotted path; an array element becomes null, as `$unset` does.
pub fn remove_path(document: &mut Document, path: &str) -> Option<Bson> {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last()?;
    let mut current: &mut Bson = document.get_mut(parents.first().copied().unwrap_or(last))?;
    if parents.is_empty() {
        return document.remove(*last);
    }
    for part in &parents[1..] {
        current = match current {
            Bson::Document(d) => d.get_mut(*part)?,
            Bson::Array(a) => a.get_mut(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match current {
        Bson::Document(d) => d.remove(*last),
        Bson::Array(a) => {
            let slot = a.get_mut(last.parse::<usize>().ok()?)?;
            Some(std::mem::replace(slot, Bson::Null))
        }
        _ => None,
    }
}

enum ContainerMut<'a> {
    Document(&'a mut Document),
    Array(&'a mut Vec<Bson>),
}

impl<'a> ContainerMut<'a> {
    fn child(self, part: &str, path: &str) -> CommandResult<ContainerMut<'a>> {
        let slot: &'a mut Bson = match self {
            ContainerMut::Document(d) => {
                if !d.contains_key(part) {
                    d.insert(part, Document::new());
                }
                d.get_mut(part).expect("inserted")
            }
            ContainerMut::Array(a) => {
                let index = array_index(part, path)?;
                while a.len() <= index {
                    a.push(Bson::Null);
                }
                if matches!(a[index], Bson::Null) {
                    a[index] = Bson::Document(Document::new());
                }
                &mut a[index]
            }
        };
        match slot {
            Bson::Document(d) => Ok(ContainerMut::Document(d)),
            Bson::Array(a) => Ok(ContainerMut::Array(a)),
            other => Err(path_not_viable(format!(
                "Cannot create field '{part}' in element {{{part}: {other}}}"
            ))),
        }
    }

    fn set(self, part: &str, value: Bson, path: &str) -> CommandResult<()> {
        match self {
            ContainerMut::Document(d) => {
                d.insert(part, value);
            }
            ContainerMut::Array(a) => {
                let index = array_index(part, path)?;
                while a.len() <= index {
                    a.push(Bson::Null);
                }
                a[index] = value;
            }
        }
        Ok(())
    }
}

fn array_index(part: &str, path: &str) -> CommandResult<usize> {
    part.parse::<usize>().map_err(|_| {
        path_not_viable(format!(
            "Cannot create field '{part}' in an array while updating '{path}'"
        ))
    })
}

pub(super) fn to_raw(value: &Bson) -> CommandResult<RawBson> {
    Ok(RawBson::try_from(value.clone())?)
}

fn from_raw(value: RawBson) -> CommandResult<Bson> {
    Ok(Bson::try_from(value)?)
}

fn is_number(value: &Bson) -> bool {
    matches!(
        value,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
    )
}

fn apply_operator(
    document: &mut Document,
    operator: &str,
    path: &str,
    argument: &Bson,
    inserting: bool,
) -> CommandResult<()> {
    match operator {
        "$set" => set_path(document, path, argument.clone()),
        "$setOnInsert" => {
            if inserting {
                set_path(document, path, argument.clone())?;
            }
            Ok(())
        }
        "$unset" => {
            remove_path(document, path);
            Ok(())
        }
        "$inc" | "$mul" => {
            if !is_number(argument) {
                return Err(CommandError::type_mismatch(format!(
                    "Cannot {} with non-numeric argument: {{{path}: {argument}}}",
                    &operator[1..]
                )));
            }
            let current = get_path(document, path).cloned();
            let base = match &current {
                // A missing field counts as zero, so $mul stores a zero of the argument's type.
                None => Bson::Int32(0),
                Some(value) if is_number(value) => value.clone(),
                Some(value) => {
                    return Err(CommandError::type_mismatch(format!(
                        "Cannot apply {operator} to a value of non-numeric type. {{_id: ...}} has the field '{path}' of non-numeric type {}",
                        crate::aggregate::expr::type_name(Some(&to_raw(value)?))
                    )))
                }
            };
            let arith_operator = if operator == "$inc" {
                Operator::Add
            } else {
                Operator::Multiply
            };
            let result = arith::evaluate(
                arith_operator,
                vec![Some(to_raw(&base)?), Some(to_raw(argument)?)],
            )?
            .expect("numeric result");
            set_path(document, path, from_raw(result)?)
        }
        "$min" | "$max" => {
            let replace = match get_path(document, path) {
                None => true,
                Some(current) => {
                    let order = compare_owned(&to_raw(argument)?, &to_raw(current)?);
                    if operator == "$min" {
                        order == Ordering::Less
                    } else {
                        order == Ordering::Greater
                    }
                }
            };
            if replace {
                set_path(document, path, argument.clone())?;
            }
            Ok(())
        }
        "$rename" => {
            let Bson::String(target) = argument else {
                unreachable!("checked while parsing")
            };
            if let Some(value) = remove_path(document, path) {
                set_path(document, target, value)?;
            }
            Ok(())
        }
        "$currentDate" => set_path(document, path, current_date(argument)),
        "$push" | "$addToSet" => push(document, operator, path, argument),
        "$pop" => {
            let from_front = matches!(argument, Bson::Int32(-1) | Bson::Int64(-1))
                || matches!(argument, Bson::Double(d) if *d == -1.0);
            match get_array_mut(document, path, operator)? {
                Some(items) if !items.is_empty() => {
                    if from_front {
                        items.remove(0);
                    } else {
                        items.pop();
                    }
                }
                _ => {}
            }
            Ok(())
        }
        "$pull" | "$pullAll" => pull(document, operator, path, argument),
        _ => unreachable!("operators are checked while parsing"),
    }
}

fn current_date(argument: &Bson) -> Bson {
    let now = DateTime::now();
    match argument {
        Bson::Document(spec) if spec.get_str("$type") == Ok("timestamp") => {
            Bson::Timestamp(bson::Timestamp {
                time: (now.timestamp_millis() / 1000) as u32,
                increment: 1,
            })
        }
        _ => Bson::DateTime(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, rawdoc};

    fn update(spec: RawDocumentBuf, document: RawDocumentBuf) -> Document {
        Update::parse(RawBsonRef::Document(&spec))
            .unwrap()
            .apply(&document, false)
            .unwrap()
            .to_document()
            .unwrap()
    }

    #[test]
    fn set_inc_unset_keep_field_order() {
        let result = update(
            rawdoc! { "$set": { "a.b": 1 }, "$inc": { "n": 2 }, "$unset": { "gone": "" } },
            rawdoc! { "_id": 1, "n": 1, "gone": true, "z": 0 },
        );
        assert_eq!(result, doc! { "_id": 1, "n": 3, "z": 0, "a": { "b": 1 } });
    }

    #[test]
    fn push_each_sort_slice() {
        let result = update(
            rawdoc! { "$push": { "list": { "$each": [5, 1], "$sort": 1, "$slice": 3 } } },
            rawdoc! { "_id": 1, "list": [4, 2] },
        );
        assert_eq!(result, doc! { "_id": 1, "list": [1, 2, 4] });
    }

    #[test]
    fn changing_id_is_rejected() {
        let spec = rawdoc! { "$set": { "_id": 2 } };
        let error = Update::parse(RawBsonRef::Document(&spec))
            .unwrap()
            .apply(&rawdoc! { "_id": 1 }, false)
            .unwrap_err();
        assert_eq!(error.code, code::IMMUTABLE_FIELD);
    }

    #[test]
    fn conflicting_paths_are_rejected() {
        let spec = rawdoc! { "$set": { "a": 1 }, "$inc": { "a.b": 1 } };
        let error = Update::parse(RawBsonRef::Document(&spec)).unwrap_err();
        assert_eq!(error.code, code::CONFLICTING_UPDATE_OPERATORS);
    }

    #[test]
    fn pull_with_condition() {
        let result = update(
            rawdoc! { "$pull": { "list": { "$gte": 3 } } },
            rawdoc! { "_id": 1, "list": [1, 3, 5, 2] },
        );
        assert_eq!(result, doc! { "_id": 1, "list": [1, 2] });
    }
}
