//! Query filters: parsing a filter document once, then matching raw documents against it.

use std::cmp::Ordering;

use bson::{RawBson, RawBsonRef, RawDocument};
use regex::Regex;

use super::number::Number;
use super::order::{canonical_rank, compare};
use super::path::lookup;
use crate::aggregate::expr::Expression;
use crate::error::{code, CommandError, CommandResult};

/// A parsed filter.
#[derive(Debug)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    /// Every predicate must hold for the values at `path`.
    Field {
        path: String,
        predicates: Vec<Predicate>,
    },
    /// `$expr`: an aggregation expression whose result is tested for truth.
    Expr(Expression),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// One condition on the values at a path.
#[derive(Debug)]
pub enum Predicate {
    Compare(CompareOp, RawBson),
    Ne(RawBson),
    In(Vec<InItem>),
    Nin(Vec<InItem>),
    Exists(bool),
    Type(Vec<TypeSpec>),
    Regex(Regex),
    Not(Vec<Predicate>),
    Size(usize),
    All(Vec<InItem>),
    ElemMatchDocument(Box<Filter>),
    ElemMatchValue(Vec<Predicate>),
    Mod(i64, i64),
}

/// An element of `$in`, `$nin` or `$all`: a value to compare, or a regular expression to match.
#[derive(Debug)]
pub enum InItem {
    Value(RawBson),
    Regex(Regex),
}

/// A `$type` operand: a BSON type number, or the alias "number" for every numeric type.
#[derive(Clone, Copy, Debug)]
pub enum TypeSpec {
    Code(i32),
    Number,
}

impl Filter {
    /// Parses a filter document. Unknown operators fail with BadValue, as `mongod` reports them.
    pub fn parse(filter: &RawDocument) -> CommandResult<Filter> {
        let mut clauses = Vec::new();
        for element in filter.iter() {
            let (key, value) = element?;
            if let Some(operator) = key.strip_prefix('$') {
                clauses.push(parse_top_level(operator, value)?);
            } else {
                clauses.push(Filter::Field {
                    path: key.to_string(),
                    predicates: parse_field_value(value)?,
                });
            }
        }
        Ok(if clauses.len() == 1 {
            clauses.pop().expect("one clause")
        } else {
            Filter::And(clauses)
        })
    }

    /// Returns an empty filter, which matches every document.
    pub fn match_all() -> Filter {
        Filter::And(Vec::new())
    }

    pub fn matches(&self, document: &RawDocument) -> bool {
        match self {
            Filter::And(clauses) => clauses.iter().all(|c| c.matches(document)),
            Filter::Or(clauses) => clauses.iter().any(|c| c.matches(document)),
            Filter::Nor(clauses) => !clauses.iter().any(|c| c.matches(document)),
            Filter::Field { path, predicates } => {
                let mut values = Vec::new();
                lookup(document, path, &mut values);
                predicates.iter().all(|p| p.matches(&values))
            }
            Filter::Expr(expression) => expression
                .evaluate(document)
                .map(|v| crate::aggregate::expr::is_truthy(v.as_ref()))
                .unwrap_or(false),
        }
    }
}

fn parse_top_level(operator: &str, value: RawBsonRef<'_>) -> CommandResult<Filter> {
    let parse_list = |value: RawBsonRef<'_>| -> CommandResult<Vec<Filter>> {
        let RawBsonRef::Array(array) = value else {
            return Err(CommandError::bad_value(format!(
                "${operator} must be an array"
            )));
        };
        let mut filters = Vec::new();
        for item in array {
            match item? {
                RawBsonRef::Document(document) => filters.push(Filter::parse(document)?),
                _ => {
                    return Err(CommandError::bad_value(format!(
                        "${operator} argument's entries must be objects"
                    )))
                }
            }
        }
        if filters.is_empty() {
            return Err(CommandError::bad_value(format!(
                "${operator} argument must be a non-empty array"
            )));
        }
        Ok(filters)
    };
    match operator {
        "and" => Ok(Filter::And(parse_list(value)?)),
        "or" => Ok(Filter::Or(parse_list(value)?)),
        "nor" => Ok(Filter::Nor(parse_list(value)?)),
        "expr" => Ok(Filter::Expr(Expression::parse(value)?)),
        "comment" => Ok(Filter::match_all()),
        _ => Err(CommandError::bad_value(format!(
            "unknown top level operator: ${operator}"
        ))),
    }
}

fn is_operator_document(document: &RawDocument) -> bool {
    matches!(document.iter().next(), Some(Ok((key, _))) if key.starts_with('$'))
}

/// Parses the value of a field in a filter: an operator document, a regex or a value to equal.
pub fn parse_field_value(value: RawBsonRef<'_>) -> CommandResult<Vec<Predicate>> {
    match value {
        RawBsonRef::Document(document) if is_operator_document(document) => {
            parse_operators(document)
        }
        RawBsonRef::RegularExpression(regex) => Ok(vec![Predicate::Regex(compile_regex(
            regex.pattern,
            regex.options,
        )?)]),
        other => Ok(vec![Predicate::Compare(CompareOp::Eq, other.to_raw_bson())]),
    }
}

fn parse_operators(document: &RawDocument) -> CommandResult<Vec<Predicate>> {
    let mut predicates = Vec::new();
    let options = document.get_str("$options").ok();
    for element in document.iter() {
        let (key, value) = element?;
        let predicate = match key {
            "$eq" => Predicate::Compare(CompareOp::Eq, value.to_raw_bson()),
            "$gt" => Predicate::Compare(CompareOp::Gt, value.to_raw_bson()),
            "$gte" => Predicate::Compare(CompareOp::Gte, value.to_raw_bson()),
            "$lt" => Predicate::Compare(CompareOp::Lt, value.to_raw_bson()),
            "$lte" => Predicate::Compare(CompareOp::Lte, value.to_raw_bson()),
            "$ne" => Predicate::Ne(value.to_raw_bson()),
            "$in" => Predicate::In(parse_in_list("$in", value)?),
            "$nin" => Predicate::Nin(parse_in_list("$nin", value)?),
            "$all" => Predicate::All(parse_in_list("$all", value)?),
            "$exists" => Predicate::Exists(crate::aggregate::expr::is_truthy(Some(
                &value.to_raw_bson(),
            ))),
            "$type" => Predicate::Type(parse_types(value)?),
            "$size" => Predicate::Size(parse_size(value)?),
            "$mod" => parse_mod(value)?,
            "$regex" => {
                let (pattern, inline_options) = match value {
                    RawBsonRef::String(pattern) => (pattern, ""),
                    RawBsonRef::RegularExpression(regex) => (regex.pattern, regex.options),
                    _ => return Err(CommandError::bad_value("$regex has to be a string")),
                };
                Predicate::Regex(compile_regex(pattern, options.unwrap_or(inline_options))?)
            }
            "$options" => {
                if document.get("$regex").ok().flatten().is_none() {
                    return Err(CommandError::bad_value("$options needs a $regex"));
                }
                continue;
            }
            "$not" => match value {
                RawBsonRef::Document(inner) if is_operator_document(inner) => {
                    Predicate::Not(parse_operators(inner)?)
                }
                RawBsonRef::RegularExpression(regex) => Predicate::Not(vec![Predicate::Regex(
                    compile_regex(regex.pattern, regex.options)?,
                )]),
                _ => return Err(CommandError::bad_value("$not needs a regex or a document")),
            },
            "$elemMatch" => {
                let RawBsonRef::Document(inner) = value else {
                    return Err(CommandError::bad_value("$elemMatch needs an Object"));
                };
                let value_form = matches!(
                    inner.iter().next(),
                    Some(Ok((k, _))) if k.starts_with('$')
                        && !matches!(k, "$and" | "$or" | "$nor" | "$expr")
                );
                if value_form {
                    Predicate::ElemMatchValue(parse_operators(inner)?)
                } else {
                    Predicate::ElemMatchDocument(Box::new(Filter::parse(inner)?))
                }
            }
            "$comment" => continue,
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown operator: {other}"
                )));
            }
        };
        predicates.push(predicate);
    }
    Ok(predicates)
}

fn parse_in_list(operator: &str, value: RawBsonRef<'_>) -> CommandResult<Vec<InItem>> {
    let RawBsonRef::Array(array) = value else {
        return Err(CommandError::bad_value(format!(
            "{operator} needs an array"
        )));
    };
    let mut items = Vec::new();
    for item in array {
        items.push(match item? {
            RawBsonRef::RegularExpression(regex) => {
                InItem::Regex(compile_regex(regex.pattern, regex.options)?)
            }
            other => InItem::Value(other.to_raw_bson()),
        });
    }
    Ok(items)
}

fn parse_types(value: RawBsonRef<'_>) -> CommandResult<Vec<TypeSpec>> {
    match value {
        RawBsonRef::Array(array) => {
            let mut types = Vec::new();
            for item in array {
                types.push(parse_type(item?)?);
            }
            Ok(types)
        }
        single => Ok(vec![parse_type(single)?]),
    }
}

/// Parses a `$type` operand: a type number or one of MongoDB's type aliases.
pub fn parse_type(value: RawBsonRef<'_>) -> CommandResult<TypeSpec> {
    if let Some(number) = Number::from_raw(value) {
        return Ok(TypeSpec::Code(number.to_f64() as i32));
    }
    let RawBsonRef::String(alias) = value else {
        return Err(CommandError::type_mismatch(
            "type must be represented as a number or a string",
        ));
    };
    let code = match alias {
        "double" => 1,
        "string" => 2,
        "object" => 3,
        "array" => 4,
        "binData" => 5,
        "undefined" => 6,
        "objectId" => 7,
        "bool" => 8,
        "date" => 9,
        "null" => 10,
        "regex" => 11,
        "dbPointer" => 12,
        "javascript" => 13,
        "symbol" => 14,
        "javascriptWithScope" => 15,
        "int" => 16,
        "timestamp" => 17,
        "long" => 18,
        "decimal" => 19,
        "minKey" => -1,
        "maxKey" => 127,
        "number" => return Ok(TypeSpec::Number),
        other => {
            return Err(CommandError::bad_value(format!(
                "Unknown type name alias: {other}"
            )))
        }
    };
    Ok(TypeSpec::Code(code))
}

fn parse_size(value: RawBsonRef<'_>) -> CommandResult<usize> {
    let number = Number::from_raw(value)
        .ok_or_else(|| CommandError::bad_value("$size needs a number"))?
        .to_f64();
    if number < 0.0 || number.fract() != 0.0 {
        return Err(CommandError::bad_value(
            "$size may not be negative or fractional",
        ));
    }
    Ok(number as usize)
}

fn parse_mod(value: RawBsonRef<'_>) -> CommandResult<Predicate> {
    let array = match value {
        RawBsonRef::Array(array) => array,
        _ => {
            return Err(CommandError::bad_value(
                "malformed mod, needs to be an array",
            ))
        }
    };
    let items: Vec<f64> = array
        .into_iter()
        .filter_map(|v| v.ok().and_then(Number::from_raw).map(|n| n.to_f64()))
        .collect();
    if items.len() != 2 {
        return Err(CommandError::bad_value(
            "malformed mod, not enough elements",
        ));
    }
    if items[0] as i64 == 0 {
        return Err(CommandError::bad_value("divisor cannot be 0"));
    }
    Ok(Predicate::Mod(items[0] as i64, items[1] as i64))
}

/// Compiles a MongoDB regular expression with its options (i, m, s, x).
pub fn compile_regex(pattern: &str, options: &str) -> CommandResult<Regex> {
    let mut flags = String::new();
    for option in options.chars() {
        match option {
            'i' | 'm' | 's' | 'x' => flags.push(option),
            'u' => {}
            other => {
                return Err(CommandError::new(
                    51108,
                    format!("invalid flag in regex options: {other}"),
                ))
            }
        }
    }
    let source = if flags.is_empty() {
        pattern.to_string()
    } else {
        format!("(?{flags}){pattern}")
    };
    Regex::new(&source)
        .map_err(|e| CommandError::new(51091, format!("Regular expression is invalid: {e}")))
}

/// Evaluates `value op operand` with MongoDB's type bracketing: values of different canonical
/// types never satisfy a range comparison, except that a MinKey or MaxKey operand bounds every
/// type, and null and undefined count as equal. NaN satisfies only equality-style comparisons
/// with NaN.
pub fn compare_matches(op: CompareOp, value: RawBsonRef<'_>, operand: RawBsonRef<'_>) -> bool {
    let value_rank = canonical_rank(value);
    let operand_rank = canonical_rank(operand);
    let inclusive = matches!(op, CompareOp::Eq | CompareOp::Gte | CompareOp::Lte);
    if value_rank != operand_rank {
        if value_rank + operand_rank == 5 {
            // Undefined (rank 0) and null (rank 5).
            return inclusive;
        }
        return match operand {
            RawBsonRef::MaxKey => matches!(op, CompareOp::Lt | CompareOp::Lte),
            RawBsonRef::MinKey => matches!(op, CompareOp::Gt | CompareOp::Gte),
            _ => false,
        };
    }
    if value_rank == 10 {
        let value_nan = Number::from_raw(value).is_some_and(|n| n.is_nan());
        let operand_nan = Number::from_raw(operand).is_some_and(|n| n.is_nan());
        if value_nan || operand_nan {
            return value_nan && operand_nan && inclusive;
        }
    }
    let order = compare(value, operand);
    match op {
        CompareOp::Eq => order == Ordering::Equal,
        CompareOp::Gt => order == Ordering::Greater,
        CompareOp::Gte => order != Ordering::Less,
        CompareOp::Lt => order == Ordering::Less,
        CompareOp::Lte => order != Ordering::Greater,
    }
}

/// Calls `test` on each value and, for arrays, on each element, stopping at the first match.
fn any_value_or_element(
    values: &[Option<RawBsonRef<'_>>],
    test: &mut dyn FnMut(RawBsonRef<'_>) -> bool,
) -> bool {
    values.iter().flatten().any(|value| {
        if test(*value) {
            return true;
        }
        match value {
            RawBsonRef::Array(array) => array.into_iter().flatten().any(&mut *test),
            _ => false,
        }
    })
}

fn type_matches(spec: TypeSpec, value: RawBsonRef<'_>) -> bool {
    match spec {
        TypeSpec::Number => canonical_rank(value) == 10,
        TypeSpec::Code(code) => {
            let actual = value.element_type() as u8 as i32;
            let actual = match value {
                RawBsonRef::MinKey => -1,
                _ => actual,
            };
            actual == code
        }
    }
}

fn in_item_matches(item: &InItem, value: RawBsonRef<'_>) -> bool {
    match item {
        InItem::Value(operand) => compare_matches(CompareOp::Eq, value, operand.as_raw_bson_ref()),
        InItem::Regex(regex) => regex_matches(regex, value),
    }
}

fn regex_matches(regex: &Regex, value: RawBsonRef<'_>) -> bool {
    match value {
        RawBsonRef::String(text) | RawBsonRef::Symbol(text) => regex.is_match(text),
        _ => false,
    }
}

fn matches_missing_as_null(items: &[InItem]) -> bool {
    items
        .iter()
        .any(|item| matches!(item, InItem::Value(v) if matches!(v, RawBson::Null)))
}

impl Predicate {
    /// Tests the values found at a path. `None` entries are branches where the path is missing,
    /// which comparisons treat as null.
    pub fn matches(&self, values: &[Option<RawBsonRef<'_>>]) -> bool {
        let any_missing = values.iter().any(Option::is_none);
        match self {
            Predicate::Compare(op, operand) => {
                let operand = operand.as_raw_bson_ref();
                if any_missing && compare_matches(*op, RawBsonRef::Null, operand) {
                    return true;
                }
                any_value_or_element(values, &mut |v| compare_matches(*op, v, operand))
            }
            Predicate::Ne(operand) => {
                !Predicate::Compare(CompareOp::Eq, operand.clone()).matches(values)
            }
            Predicate::In(items) => {
                (any_missing && matches_missing_as_null(items))
                    || any_value_or_element(values, &mut |v| {
                        items.iter().any(|item| in_item_matches(item, v))
                    })
            }
            Predicate::Nin(items) => {
                !((any_missing && matches_missing_as_null(items))
                    || any_value_or_element(values, &mut |v| {
                        items.iter().any(|item| in_item_matches(item, v))
                    }))
            }
            Predicate::All(items) => {
                !items.is_empty()
                    && items.iter().all(|item| {
                        any_value_or_element(values, &mut |v| in_item_matches(item, v))
                    })
            }
            Predicate::Exists(expected) => values.iter().any(Option::is_some) == *expected,
            Predicate::Type(specs) => values.iter().flatten().any(|value| {
                specs.iter().any(|spec| type_matches(*spec, *value))
                    || matches!(value, RawBsonRef::Array(array)
                        if array.into_iter().flatten()
                            .any(|e| specs.iter().any(|spec| type_matches(*spec, e))))
            }),
            Predicate::Regex(regex) => {
                any_value_or_element(values, &mut |v| regex_matches(regex, v))
            }
            Predicate::Not(inner) => !inner.iter().all(|p| p.matches(values)),
            Predicate::Size(size) => values.iter().flatten().any(|value| {
                matches!(value, RawBsonRef::Array(array) if array.into_iter().count() == *size)
            }),
            Predicate::ElemMatchDocument(filter) => values.iter().flatten().any(|value| {
                matches!(value, RawBsonRef::Array(array) if array.into_iter().flatten().any(|e| {
                    matches!(e, RawBsonRef::Document(d) if filter.matches(d))
                }))
            }),
            Predicate::ElemMatchValue(inner) => values.iter().flatten().any(|value| {
                matches!(value, RawBsonRef::Array(array) if array.into_iter().flatten().any(|e| {
                    let single = [Some(e)];
                    inner.iter().all(|p| p.matches(&single))
                }))
            }),
            Predicate::Mod(divisor, remainder) => any_value_or_element(values, &mut |v| {
                Number::from_raw(v).is_some_and(|n| {
                    let x = n.to_f64();
                    x.is_finite() && (x.trunc() as i64) % divisor == *remainder
                })
            }),
        }
    }
}

/// Error for a filter that is not a document.
pub fn filter_type_error(field: &str) -> CommandError {
    CommandError::new(
        code::TYPE_MISMATCH,
        format!("BSON field '{field}' is the wrong type, expected type 'object'"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn matches(filter: bson::RawDocumentBuf, document: bson::RawDocumentBuf) -> bool {
        Filter::parse(&filter).unwrap().matches(&document)
    }

    #[test]
    fn range_operators_are_type_bracketed() {
        assert!(!matches(
            rawdoc! { "a": { "$gte": 5 } },
            rawdoc! { "a": "x" }
        ));
        assert!(matches(
            rawdoc! { "a": { "$gte": 5 } },
            rawdoc! { "a": 5.5 }
        ));
        assert!(matches(
            rawdoc! { "a": { "$gte": bson::RawBson::MinKey } },
            rawdoc! { "a": "x" }
        ));
        assert!(matches(
            rawdoc! { "a": { "$lte": bson::RawBson::MaxKey } },
            rawdoc! { "a": [1] }
        ));
        assert!(!matches(
            rawdoc! { "a": { "$lt": bson::RawBson::MinKey } },
            rawdoc! { "a": 1 }
        ));
    }

    #[test]
    fn nan_matches_only_inclusive_nan() {
        assert!(!matches(
            rawdoc! { "a": { "$lt": 0 } },
            rawdoc! { "a": f64::NAN }
        ));
        assert!(matches(
            rawdoc! { "a": f64::NAN },
            rawdoc! { "a": f64::NAN }
        ));
        assert!(matches(
            rawdoc! { "a": { "$gte": f64::NAN } },
            rawdoc! { "a": f64::NAN }
        ));
        assert!(!matches(
            rawdoc! { "a": { "$gt": f64::NAN } },
            rawdoc! { "a": f64::NAN }
        ));
    }

    #[test]
    fn null_matches_missing_and_arrays_match_elements() {
        assert!(matches(
            rawdoc! { "a": bson::RawBson::Null },
            rawdoc! { "b": 1 }
        ));
        assert!(matches(rawdoc! { "a": 2 }, rawdoc! { "a": [1, 2, 3] }));
        assert!(matches(
            rawdoc! { "a": [1, 2] },
            rawdoc! { "a": [[1, 2], 3] }
        ));
        assert!(!matches(
            rawdoc! { "a": { "$ne": 2 } },
            rawdoc! { "a": [1, 2] }
        ));
    }

    #[test]
    fn logical_operators_combine() {
        let filter = rawdoc! { "$or": [ { "a": 1 }, { "b": { "$exists": true } } ] };
        assert!(matches(
            filter.clone(),
            rawdoc! { "b": bson::RawBson::Null }
        ));
        assert!(!matches(filter, rawdoc! { "a": 2 }));
        assert!(matches(
            rawdoc! { "a": { "$not": { "$gt": 5 } } },
            rawdoc! { "a": "str" }
        ));
    }

    #[test]
    fn unknown_operator_is_bad_value() {
        let error = Filter::parse(&rawdoc! { "a": { "$bogus": 1 } }).unwrap_err();
        assert_eq!(error.code, code::BAD_VALUE);
    }
}
