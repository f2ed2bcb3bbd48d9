//! Aggregation expressions: field paths, literals and the operators used by `$project`,
//! `$group`, `$bucketAuto` and `$expr`.

use std::cmp::Ordering;

use bson::{RawArrayBuf, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::{code, CommandError, CommandResult};
use crate::query::number::Number;
use crate::query::order::{compare, compare_owned};

/// A parsed expression.
#[derive(Clone, Debug)]
pub enum Expression {
    Literal(RawBson),
    /// `$a.b`: a dotted path into the current document.
    FieldPath(String),
    /// `$$ROOT` or `$$CURRENT`.
    Root,
    Object(Vec<(String, Expression)>),
    Array(Vec<Expression>),
    Operator(Operator, Vec<Expression>),
}

/// The expression operators the emulator implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Cmp,
    And,
    Or,
    Not,
    Add,
    Subtract,
    Multiply,
    Divide,
    Mod,
    Abs,
    Concat,
    ToLower,
    ToUpper,
    Cond,
    IfNull,
    Size,
    Type,
    In,
    ArrayElemAt,
    ToString,
    Max,
    Min,
    Sum,
    Avg,
}

fn operator_named(name: &str) -> Option<Operator> {
    Some(match name {
        "$eq" => Operator::Eq,
        "$ne" => Operator::Ne,
        "$gt" => Operator::Gt,
        "$gte" => Operator::Gte,
        "$lt" => Operator::Lt,
        "$lte" => Operator::Lte,
        "$cmp" => Operator::Cmp,
        "$and" => Operator::And,
        "$or" => Operator::Or,
        "$not" => Operator::Not,
        "$add" => Operator::Add,
        "$subtract" => Operator::Subtract,
        "$multiply" => Operator::Multiply,
        "$divide" => Operator::Divide,
        "$mod" => Operator::Mod,
        "$abs" => Operator::Abs,
        "$concat" => Operator::Concat,
        "$toLower" => Operator::ToLower,
        "$toUpper" => Operator::ToUpper,
        "$cond" => Operator::Cond,
        "$ifNull" => Operator::IfNull,
        "$size" => Operator::Size,
        "$type" => Operator::Type,
        "$in" => Operator::In,
        "$arrayElemAt" => Operator::ArrayElemAt,
        "$toString" => Operator::ToString,
        "$max" => Operator::Max,
        "$min" => Operator::Min,
        "$sum" => Operator::Sum,
        "$avg" => Operator::Avg,
        _ => return None,
    })
}

/// Returns whether a value is true in the sense of `$cond`, `$and` and `$expr`: everything except
/// missing, null, undefined, false and numeric zero.
pub fn is_truthy(value: Option<&RawBson>) -> bool {
    match value {
        None | Some(RawBson::Null) | Some(RawBson::Undefined) => false,
        Some(RawBson::Boolean(b)) => *b,
        Some(other) => match Number::from_raw(other.as_raw_bson_ref()) {
            Some(number) => number.to_f64() != 0.0 || number.is_nan(),
            None => true,
        },
    }
}

impl Expression {
    pub fn parse(value: RawBsonRef<'_>) -> CommandResult<Expression> {
        match value {
            RawBsonRef::String(text) => Ok(parse_string(text)),
            RawBsonRef::Array(array) => {
                let mut items = Vec::new();
                for item in array {
                    items.push(Expression::parse(item?)?);
                }
                Ok(Expression::Array(items))
            }
            RawBsonRef::Document(document) => parse_document(document),
            other => Ok(Expression::Literal(other.to_raw_bson())),
        }
    }

    /// Evaluates the expression against `document`. `Ok(None)` is a missing value.
    pub fn evaluate(&self, document: &RawDocument) -> CommandResult<Option<RawBson>> {
        match self {
            Expression::Literal(value) => Ok(Some(value.clone())),
            Expression::Root => Ok(Some(RawBson::Document(document.to_raw_document_buf()))),
            Expression::FieldPath(path) => {
                let parts: Vec<&str> = path.split('.').collect();
                Ok(field_path_value(RawBsonRef::Document(document), &parts))
            }
            Expression::Object(fields) => {
                let mut out = RawDocumentBuf::new();
                for (name, expression) in fields {
                    if let Some(value) = expression.evaluate(document)? {
                        out.append(name, value);
                    }
                }
                Ok(Some(RawBson::Document(out)))
            }
            Expression::Array(items) => {
                let mut out = RawArrayBuf::new();
                for item in items {
                    out.push(item.evaluate(document)?.unwrap_or(RawBson::Null));
                }
                Ok(Some(RawBson::Array(out)))
            }
            Expression::Operator(operator, args) => evaluate_operator(*operator, args, document),
        }
    }
}

fn parse_string(text: &str) -> Expression {
    if text == "$$ROOT" || text == "$$CURRENT" {
        Expression::Root
    } else if let Some(path) = text
        .strip_prefix("$$ROOT.")
        .or(text.strip_prefix("$$CURRENT."))
    {
        Expression::FieldPath(path.to_string())
    } else if let Some(path) = text.strip_prefix('$') {
        Expression::FieldPath(path.to_string())
    } else {
        Expression::Literal(RawBson::String(text.to_string()))
    }
}

fn parse_document(document: &RawDocument) -> CommandResult<Expression> {
    let mut iter = document.iter();
    let first = iter.next().transpose()?;
    match first {
        Some((key, value)) if key.starts_with('$') => {
            if iter.next().is_some() {
                return Err(CommandError::new(
                    15983,
                    format!(
                        "an expression specification must contain exactly one field, \
                         the name of the expression. Found 2 fields in {document:?}"
                    ),
                ));
            }
            if key == "$literal" {
                return Ok(Expression::Literal(value.to_raw_bson()));
            }
            let operator = operator_named(key).ok_or_else(|| {
                CommandError::new(
                    code::INVALID_PIPELINE_OPERATOR,
                    format!("Unrecognized expression '{key}'"),
                )
            })?;
            let args = match (operator, value) {
                (Operator::Cond, RawBsonRef::Document(cond)) => {
                    let part = |name: &str| -> CommandResult<Expression> {
                        match cond.get(name)? {
                            Some(v) => Expression::parse(v),
                            None => Err(CommandError::new(
                                17080,
                                format!("Missing '{name}' parameter to $cond"),
                            )),
                        }
                    };
                    vec![part("if")?, part("then")?, part("else")?]
                }
                (_, RawBsonRef::Array(array)) => {
                    let mut args = Vec::new();
                    for item in array {
                        args.push(Expression::parse(item?)?);
                    }
                    args
                }
                (_, single) => vec![Expression::parse(single)?],
            };
            Ok(Expression::Operator(operator, args))
        }
        _ => {
            let mut fields = Vec::new();
            for element in document.iter() {
                let (key, value) = element?;
                fields.push((key.to_string(), Expression::parse(value)?));
            }
            Ok(Expression::Object(fields))
        }
    }
}

/// Reads an aggregation field path: arrays along the way map to arrays of the values found in
/// their document elements.
fn field_path_value(value: RawBsonRef<'_>, parts: &[&str]) -> Option<RawBson> {
    if parts.is_empty() {
        return Some(value.to_raw_bson());
    }
    match value {
        RawBsonRef::Document(document) => {
            let next = document.get(parts[0]).ok().flatten()?;
            field_path_value(next, &parts[1..])
        }
        RawBsonRef::Array(array) => {
            let mut out = RawArrayBuf::new();
            for element in array.into_iter().flatten() {
                if let RawBsonRef::Document(_) | RawBsonRef::Array(_) = element {
                    if let Some(found) = field_path_value(element, parts) {
                        out.push(found);
                    }
                }
            }
            Some(RawBson::Array(out))
        }
        _ => None,
    }
}

fn arity(operator: Operator, args: &[Expression], expected: usize) -> CommandResult<()> {
    if args.len() != expected {
        return Err(CommandError::new(
            16020,
            format!(
                "Expression {operator:?} takes exactly {expected} arguments. {} were passed in.",
                args.len()
            ),
        ));
    }
    Ok(())
}

fn evaluate_operator(
    operator: Operator,
    args: &[Expression],
    document: &RawDocument,
) -> CommandResult<Option<RawBson>> {
    let values = |args: &[Expression]| -> CommandResult<Vec<Option<RawBson>>> {
        args.iter().map(|a| a.evaluate(document)).collect()
    };
    use Operator::*;
    let result = match operator {
        Eq | Ne | Gt | Gte | Lt | Lte | Cmp => {
            arity(operator, args, 2)?;
            let v = values(args)?;
            // Missing compares as null-less "missing", which sorts below null; treat it as
            // Undefined so $expr ranges follow full BSON order.
            let left = v[0].clone().unwrap_or(RawBson::Undefined);
            let right = v[1].clone().unwrap_or(RawBson::Undefined);
            let order = compare_owned(&left, &right);
            match operator {
                Eq => RawBson::Boolean(order == Ordering::Equal),
                Ne => RawBson::Boolean(order != Ordering::Equal),
                Gt => RawBson::Boolean(order == Ordering::Greater),
                Gte => RawBson::Boolean(order != Ordering::Less),
                Lt => RawBson::Boolean(order == Ordering::Less),
                Lte => RawBson::Boolean(order != Ordering::Greater),
                _ => RawBson::Int32(order as i32),
            }
        }
        And => RawBson::Boolean(values(args)?.iter().all(|v| is_truthy(v.as_ref()))),
        Or => RawBson::Boolean(values(args)?.iter().any(|v| is_truthy(v.as_ref()))),
        Not => {
            arity(operator, args, 1)?;
            RawBson::Boolean(!is_truthy(args[0].evaluate(document)?.as_ref()))
        }
        Add | Subtract | Multiply | Divide | Mod => {
            return super::arith::evaluate(operator, values(args)?);
        }
        Abs => {
            arity(operator, args, 1)?;
            return super::arith::abs(args[0].evaluate(document)?);
        }
        Concat => {
            let mut out = String::new();
            for value in values(args)? {
                match value {
                    Some(RawBson::String(s)) => out.push_str(&s),
                    None | Some(RawBson::Null) => return Ok(Some(RawBson::Null)),
                    Some(other) => {
                        return Err(CommandError::new(
                            16702,
                            format!(
                                "$concat only supports strings, not {:?}",
                                other.element_type()
                            ),
                        ))
                    }
                }
            }
            RawBson::String(out)
        }
        ToLower | ToUpper | ToString => {
            arity(operator, args, 1)?;
            let text = match args[0].evaluate(document)? {
                None | Some(RawBson::Null) if operator == ToString => {
                    return Ok(Some(RawBson::Null))
                }
                None | Some(RawBson::Null) => String::new(),
                Some(value) => display_string(&value),
            };
            RawBson::String(match operator {
                ToLower => text.to_lowercase(),
                ToUpper => text.to_uppercase(),
                _ => text,
            })
        }
        Cond => {
            arity(operator, args, 3)?;
            let pick = if is_truthy(args[0].evaluate(document)?.as_ref()) {
                &args[1]
            } else {
                &args[2]
            };
            return pick.evaluate(document);
        }
        IfNull => {
            for arg in args {
                match arg.evaluate(document)? {
                    None | Some(RawBson::Null) | Some(RawBson::Undefined) => continue,
                    found => return Ok(found),
                }
            }
            RawBson::Null
        }
        Size => {
            arity(operator, args, 1)?;
            match args[0].evaluate(document)? {
                Some(RawBson::Array(array)) => RawBson::Int32(array.into_iter().count() as i32),
                other => {
                    return Err(CommandError::new(
                        17124,
                        format!(
                            "The argument to $size must be an array. Type of argument: {}",
                            type_name(other.as_ref())
                        ),
                    ))
                }
            }
        }
        Type => {
            arity(operator, args, 1)?;
            RawBson::String(type_name(args[0].evaluate(document)?.as_ref()).to_string())
        }
        In => {
            arity(operator, args, 2)?;
            let v = values(args)?;
            let Some(RawBson::Array(array)) = &v[1] else {
                return Err(CommandError::new(
                    40081,
                    "$in requires an array as a second argument",
                ));
            };
            let needle = v[0].clone().unwrap_or(RawBson::Undefined);
            RawBson::Boolean(
                array
                    .into_iter()
                    .flatten()
                    .any(|e| compare(e, needle.as_raw_bson_ref()) == Ordering::Equal),
            )
        }
        ArrayElemAt => {
            arity(operator, args, 2)?;
            let v = values(args)?;
            let (Some(RawBson::Array(array)), Some(index)) = (&v[0], &v[1]) else {
                return Ok(Some(RawBson::Null));
            };
            let index = Number::from_raw(index.as_raw_bson_ref())
                .map(|n| n.to_f64() as i64)
                .unwrap_or(0);
            let items: Vec<RawBsonRef<'_>> = array.into_iter().flatten().collect();
            let position = if index < 0 {
                items.len() as i64 + index
            } else {
                index
            };
            return Ok(usize::try_from(position)
                .ok()
                .and_then(|p| items.get(p))
                .map(|v| v.to_raw_bson()));
        }
        Max | Min | Sum | Avg => {
            let v = values(args)?;
            // With one array argument these operate on the array's elements.
            let items: Vec<RawBson> = match v.as_slice() {
                [Some(RawBson::Array(array))] => array
                    .into_iter()
                    .flatten()
                    .map(|e| e.to_raw_bson())
                    .collect(),
                _ => v.into_iter().flatten().collect(),
            };
            let mut accumulator = super::group::Accumulator::for_operator(operator);
            for item in &items {
                accumulator.add(Some(item));
            }
            return Ok(Some(accumulator.finish()));
        }
    };
    Ok(Some(result))
}

/// Renders a value the way `$toString` does for the common types.
fn display_string(value: &RawBson) -> String {
    match value {
        RawBson::String(s) | RawBson::Symbol(s) => s.clone(),
        RawBson::Int32(v) => v.to_string(),
        RawBson::Int64(v) => v.to_string(),
        RawBson::Double(v) => v.to_string(),
        RawBson::Decimal128(v) => v.to_string(),
        RawBson::Boolean(v) => v.to_string(),
        RawBson::ObjectId(v) => v.to_hex(),
        RawBson::DateTime(v) => v.try_to_rfc3339_string().unwrap_or_default(),
        other => format!("{other:?}"),
    }
}

/// Returns the `$type` name of a value; `"missing"` when absent.
pub fn type_name(value: Option<&RawBson>) -> &'static str {
    let Some(value) = value else {
        return "missing";
    };
    match value {
        RawBson::Double(_) => "double",
        RawBson::String(_) => "string",
        RawBson::Document(_) => "object",
        RawBson::Array(_) => "array",
        RawBson::Binary(_) => "binData",
        RawBson::Undefined => "undefined",
        RawBson::ObjectId(_) => "objectId",
        RawBson::Boolean(_) => "bool",
        RawBson::DateTime(_) => "date",
        RawBson::Null => "null",
        RawBson::RegularExpression(_) => "regex",
        RawBson::DbPointer(_) => "dbPointer",
        RawBson::JavaScriptCode(_) => "javascript",
        RawBson::Symbol(_) => "symbol",
        RawBson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        RawBson::Int32(_) => "int",
        RawBson::Timestamp(_) => "timestamp",
        RawBson::Int64(_) => "long",
        RawBson::Decimal128(_) => "decimal",
        RawBson::MinKey => "minKey",
        RawBson::MaxKey => "maxKey",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn eval(expression: bson::RawDocumentBuf, document: bson::RawDocumentBuf) -> Option<RawBson> {
        Expression::parse(RawBsonRef::Document(&expression))
            .unwrap()
            .evaluate(&document)
            .unwrap()
    }

    #[test]
    fn comparison_uses_full_bson_order() {
        let expression = rawdoc! { "$gt": ["$a", 5] };
        assert_eq!(
            eval(expression.clone(), rawdoc! { "a": "x" }),
            Some(RawBson::Boolean(true))
        );
        assert_eq!(
            eval(expression, rawdoc! { "a": 4 }),
            Some(RawBson::Boolean(false))
        );
    }

    #[test]
    fn cond_and_if_null() {
        let expression = rawdoc! { "$cond": { "if": "$flag", "then": "yes", "else": "no" } };
        assert_eq!(
            eval(expression, rawdoc! { "flag": 0 }),
            Some(RawBson::String("no".into()))
        );
        let expression = rawdoc! { "$ifNull": ["$missing", "fallback"] };
        assert_eq!(
            eval(expression, rawdoc! {}),
            Some(RawBson::String("fallback".into()))
        );
    }

    #[test]
    fn unknown_operator_is_rejected() {
        let error = Expression::parse(RawBsonRef::Document(&rawdoc! { "$bogus": 1 })).unwrap_err();
        assert_eq!(error.code, code::INVALID_PIPELINE_OPERATOR);
    }
}
