//! Aggregation pipelines over a collection's documents.
//!
//! Stages run one after another over shared documents. `$match`, `$sort`, `$skip` and `$limit`
//! pass documents through without copying them, while `$project`, `$group` and the other
//! reshaping stages build new ones.

pub mod arith;
pub mod expr;
pub mod group;
mod sample;

use std::sync::Arc;

use bson::{RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::{code, CommandError, CommandResult};
use crate::query::filter::Filter;
use crate::query::number::Number;
use crate::query::plan::{select_with, Query};
use crate::query::projection::Projection;
use crate::query::sort::SortSpec;
use crate::store::{Collection, StoredDocument};
use expr::Expression;

/// One parsed stage.
#[derive(Debug)]
pub enum Stage {
    Match(Filter),
    Sort(SortSpec),
    Skip(usize),
    Limit(usize),
    Project(Projection),
    AddFields(Vec<(String, Expression)>),
    Count(String),
    Group(RawDocumentBuf),
    Unwind {
        path: String,
        preserve_empty: bool,
        index_field: Option<String>,
    },
    ReplaceRoot(Expression),
    Sample(usize),
    BucketAuto(RawDocumentBuf),
}

fn stage_error(name: &str, message: &str) -> CommandError {
    CommandError::new(code::FAILED_TO_PARSE, format!("{name}: {message}"))
}

fn positive_integer(name: &str, value: RawBsonRef<'_>, allow_zero: bool) -> CommandResult<usize> {
    let number = Number::from_raw(value)
        .map(|n| n.to_f64())
        .ok_or_else(|| stage_error(name, "the argument must be a number"))?;
    if number.fract() != 0.0 || number < 0.0 || (!allow_zero && number == 0.0) {
        return Err(CommandError::new(
            15958,
            format!("the {name} stage needs a positive integer, not {number}"),
        ));
    }
    Ok(number as usize)
}

fn document_argument<'a>(name: &str, value: RawBsonRef<'a>) -> CommandResult<&'a RawDocument> {
    match value {
        RawBsonRef::Document(document) => Ok(document),
        _ => Err(CommandError::new(
            15947,
            format!("the {name} stage specification must be an object"),
        )),
    }
}

impl Stage {
    pub fn parse(stage: &RawDocument) -> CommandResult<Stage> {
        let mut fields = stage.iter();
        let (name, value) = fields.next().transpose()?.ok_or_else(|| {
            CommandError::new(
                40323,
                "A pipeline stage specification object must contain exactly one field.",
            )
        })?;
        if fields.next().is_some() {
            return Err(CommandError::new(
                40323,
                "A pipeline stage specification object must contain exactly one field.",
            ));
        }
        Ok(match name {
            "$match" => Stage::Match(Filter::parse(document_argument(name, value)?)?),
            "$sort" => Stage::Sort(SortSpec::parse(document_argument(name, value)?)?),
            "$skip" => Stage::Skip(positive_integer(name, value, true)?),
            "$limit" => Stage::Limit(positive_integer(name, value, false)?),
            "$project" => {
                let spec = document_argument(name, value)?;
                if spec.is_empty() {
                    return Err(CommandError::new(51272, "$project requires at least one output field"));
                }
                Stage::Project(Projection::parse(spec)?)
            }
            "$unset" => {
                let mut spec = RawDocumentBuf::new();
                match value {
                    RawBsonRef::String(field) => spec.append(field, 0),
                    RawBsonRef::Array(list) => {
                        for item in list {
                            let field = item?.as_str().ok_or_else(|| {
                                stage_error(name, "$unset specification must be a string or an array of strings")
                            })?;
                            spec.append(field, 0);
                        }
                    }
                    _ => return Err(stage_error(name, "$unset specification must be a string or an array of strings")),
                }
                Stage::Project(Projection::parse(&spec)?)
            }
            "$addFields" | "$set" => {
                let mut fields = Vec::new();
                for element in document_argument(name, value)?.iter() {
                    let (field, expression) = element?;
                    fields.push((field.to_string(), Expression::parse(expression)?));
                }
                Stage::AddFields(fields)
            }
            "$count" => match value {
                RawBsonRef::String(field) if !field.is_empty() && !field.starts_with('$') && !field.contains('.') => {
                    Stage::Count(field.to_string())
                }
                _ => {
                    return Err(CommandError::new(
                        40156,
                        "the count field must be a non-empty string that does not start with $ or contain '.'",
                    ))
                }
            },
            "$group" => Stage::Group(document_argument(name, value)?.to_raw_document_buf()),
            "$unwind" => {
                let (path, preserve_empty, index_field) = match value {
                    RawBsonRef::String(path) => (path, false, None),
                    RawBsonRef::Document(spec) => (
                        spec.get_str("path").map_err(|_| stage_error(name, "no path specified to $unwind stage"))?,
                        spec.get_bool("preserveNullAndEmptyArrays").unwrap_or(false),
                        spec.get_str("includeArrayIndex").ok().map(str::to_string),
                    ),
                    _ => return Err(stage_error(name, "expected either a string or an object as specification for $unwind stage")),
                };
                let path = path.strip_prefix('$').ok_or_else(|| {
                    CommandError::new(28818, "path option to $unwind stage should be prefixed with a '$'")
                })?;
                Stage::Unwind {
                    path: path.to_string(),
                    preserve_empty,
                    index_field,
                }
            }
            "$replaceRoot" | "$replaceWith" => {
                let expression = if name == "$replaceRoot" {
                    document_argument(name, value)?
                        .get("newRoot")?
                        .ok_or_else(|| CommandError::new(40231, "no newRoot specified for the $replaceRoot stage"))?
                } else {
                    value
                };
                Stage::ReplaceRoot(Expression::parse(expression)?)
            }
            "$sample" => {
                let size = document_argument(name, value)?
                    .get("size")?
                    .ok_or_else(|| CommandError::new(28749, "$sample stage must specify a size"))?;
                Stage::Sample(positive_integer(name, size, true)?)
            }
            "$bucketAuto" => Stage::BucketAuto(document_argument(name, value)?.to_raw_document_buf()),
            "$changeStream" => {
                return Err(CommandError::new(
                    40602,
                    "$changeStream is only valid as the first stage in a pipeline",
                ))
            }
            other => {
                return Err(CommandError::new(
                    code::LOCATION_40324,
                    format!("Unrecognized pipeline stage name: '{other}'"),
                ))
            }
        })
    }

    /// Runs the stage over `documents`.
    pub fn run(&self, documents: Vec<StoredDocument>) -> CommandResult<Vec<StoredDocument>> {
        Ok(match self {
            Stage::Match(filter) => documents.into_iter().filter(|d| filter.matches(d)).collect(),
            Stage::Sort(spec) => {
                let mut documents = documents;
                spec.sort(&mut documents);
                documents
            }
            Stage::Skip(n) => documents.into_iter().skip(*n).collect(),
            Stage::Limit(n) => documents.into_iter().take(*n).collect(),
            Stage::Project(projection) => documents
                .iter()
                .map(|d| projection.apply(d).map(Arc::new))
                .collect::<CommandResult<_>>()?,
            Stage::AddFields(fields) => documents
                .iter()
                .map(|d| add_fields(d, fields).map(Arc::new))
                .collect::<CommandResult<_>>()?,
            Stage::Count(field) => {
                if documents.is_empty() {
                    Vec::new()
                } else {
                    let mut out = RawDocumentBuf::new();
                    out.append(field, documents.len() as i32);
                    vec![Arc::new(out)]
                }
            }
            Stage::Group(spec) => group::group(documents, spec)?,
            Stage::Unwind {
                path,
                preserve_empty,
                index_field,
            } => unwind(documents, path, *preserve_empty, index_field.as_deref())?,
            Stage::ReplaceRoot(expression) => documents
                .iter()
                .map(|d| match expression.evaluate(d)? {
                    Some(bson::RawBson::Document(root)) => Ok(Arc::new(root)),
                    other => Err(CommandError::new(
                        40228,
                        format!(
                            "'newRoot' expression must evaluate to an object, but resulting value was of type {}",
                            expr::type_name(other.as_ref())
                        ),
                    )),
                })
                .collect::<CommandResult<_>>()?,
            Stage::Sample(size) => sample::sample(documents, *size),
            Stage::BucketAuto(spec) => sample::bucket_auto(documents, spec)?,
        })
    }
}

fn add_fields(
    document: &RawDocument,
    fields: &[(String, Expression)],
) -> CommandResult<RawDocumentBuf> {
    let mut decoded = bson::Document::try_from(document)?;
    for (path, expression) in fields {
        match expression.evaluate(document)? {
            Some(value) => {
                crate::query::update::set_path(&mut decoded, path, bson::Bson::try_from(value)?)?
            }
            None => {
                crate::query::update::remove_path(&mut decoded, path);
            }
        }
    }
    Ok(RawDocumentBuf::from_document(&decoded)?)
}

fn unwind(
    documents: Vec<StoredDocument>,
    path: &str,
    preserve_empty: bool,
    index_field: Option<&str>,
) -> CommandResult<Vec<StoredDocument>> {
    let mut out = Vec::new();
    for document in documents {
        let value = crate::query::path::get_path(&document, path).map(|v| v.to_raw_bson());
        match value {
            Some(bson::RawBson::Array(items)) => {
                let mut any = false;
                for (index, item) in items.into_iter().enumerate() {
                    any = true;
                    let mut decoded = bson::Document::try_from(document.as_ref() as &RawDocument)?;
                    crate::query::update::set_path(
                        &mut decoded,
                        path,
                        bson::Bson::try_from(item?.to_raw_bson())?,
                    )?;
                    if let Some(field) = index_field {
                        decoded.insert(field, index as i64);
                    }
                    out.push(Arc::new(RawDocumentBuf::from_document(&decoded)?));
                }
                if !any && preserve_empty {
                    let mut decoded = bson::Document::try_from(document.as_ref() as &RawDocument)?;
                    crate::query::update::remove_path(&mut decoded, path);
                    if let Some(field) = index_field {
                        decoded.insert(field, bson::Bson::Null);
                    }
                    out.push(Arc::new(RawDocumentBuf::from_document(&decoded)?));
                }
            }
            None | Some(bson::RawBson::Null) => {
                if preserve_empty {
                    out.push(document);
                }
            }
            Some(_) => out.push(document),
        }
    }
    Ok(out)
}

/// Parses a pipeline array.
pub fn parse_pipeline(pipeline: &bson::RawArray) -> CommandResult<Vec<Stage>> {
    let mut stages = Vec::new();
    for stage in pipeline {
        match stage? {
            RawBsonRef::Document(stage) => stages.push(Stage::parse(stage)?),
            _ => {
                return Err(CommandError::type_mismatch(
                    "Each element of the 'pipeline' array must be an object",
                ))
            }
        }
    }
    Ok(stages)
}

/// Runs a pipeline over a collection (or over nothing when it does not exist). A leading
/// `$match` uses the `_id` range planner. `on_read` is called with every document the
/// pipeline's scan reads, whether the `$match` keeps it or not.
pub fn run_pipeline(
    collection: Option<&Collection>,
    stages: &[Stage],
    mut on_read: impl FnMut(&StoredDocument),
) -> CommandResult<Vec<StoredDocument>> {
    let Some(collection) = collection else {
        return run_stages(Vec::new(), stages);
    };
    let everything = Filter::match_all();
    let (filter, rest) = match stages.first() {
        Some(Stage::Match(filter)) => (filter, &stages[1..]),
        _ => (&everything, stages),
    };
    let documents = select_with(
        collection,
        &Query {
            filter,
            sort: &SortSpec::default(),
            skip: 0,
            limit: None,
        },
        &mut on_read,
    );
    documents.iter().for_each(&mut on_read);
    run_stages(documents, rest)
}

fn run_stages(
    mut documents: Vec<StoredDocument>,
    stages: &[Stage],
) -> CommandResult<Vec<StoredDocument>> {
    for stage in stages {
        documents = stage.run(documents)?;
    }
    Ok(documents)
}
