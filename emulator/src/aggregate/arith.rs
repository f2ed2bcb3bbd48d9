//! Arithmetic expression operators with MongoDB's numeric type promotion: Int32 widens to Int64
//! on overflow, Int64 to Double, and any Decimal128 operand makes a Decimal128 result.

use bson::{DateTime, Decimal128, RawBson};

use super::expr::Operator;
use crate::error::{CommandError, CommandResult};
use crate::query::number::Number;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Width {
    Int32,
    Int64,
    Double,
    Decimal,
}

fn width_of(value: &RawBson) -> Option<Width> {
    match value {
        RawBson::Int32(_) => Some(Width::Int32),
        RawBson::Int64(_) => Some(Width::Int64),
        RawBson::Double(_) => Some(Width::Double),
        RawBson::Decimal128(_) => Some(Width::Decimal),
        _ => None,
    }
}

fn as_number(value: &RawBson) -> Number {
    Number::from_raw(value.as_raw_bson_ref()).expect("checked numeric")
}

fn decimal_from_f64(value: f64) -> Decimal128 {
    // NOTE: Decimal128 arithmetic goes through a double, so results beyond 15-17 significant
    // digits are rounded; comparisons of stored decimals stay exact.
    let text = if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{value:?}")
    };
    text.parse()
        .unwrap_or_else(|_| "NaN".parse().expect("NaN parses"))
}

/// Packs an exact integer result into the narrowest allowed width, widening on overflow.
fn integer_result(value: i128, width: Width) -> RawBson {
    if width == Width::Int32 {
        if let Ok(v) = i32::try_from(value) {
            return RawBson::Int32(v);
        }
    }
    match i64::try_from(value) {
        Ok(v) => RawBson::Int64(v),
        Err(_) => RawBson::Double(value as f64),
    }
}

fn float_result(value: f64, width: Width) -> RawBson {
    if width == Width::Decimal {
        RawBson::Decimal128(decimal_from_f64(value))
    } else {
        RawBson::Double(value)
    }
}

fn integer_of(value: &RawBson) -> Option<i128> {
    match value {
        RawBson::Int32(v) => Some(*v as i128),
        RawBson::Int64(v) => Some(*v as i128),
        _ => None,
    }
}

fn non_numeric(operator: Operator, value: &RawBson) -> CommandError {
    CommandError::new(
        16554,
        format!(
            "{operator:?} only supports numeric types, not {}",
            super::expr::type_name(Some(value))
        ),
    )
}

/// Evaluates `$add`, `$subtract`, `$multiply`, `$divide` and `$mod`. A missing or null operand
/// makes the result null.
pub fn evaluate(
    operator: Operator,
    values: Vec<Option<RawBson>>,
) -> CommandResult<Option<RawBson>> {
    if values
        .iter()
        .any(|v| matches!(v, None | Some(RawBson::Null) | Some(RawBson::Undefined)))
    {
        return Ok(Some(RawBson::Null));
    }
    let values: Vec<RawBson> = values.into_iter().flatten().collect();
    match operator {
        Operator::Add => add(values),
        Operator::Subtract => binary(operator, values, |a, b| a - b, |a, b| a.checked_sub(b)),
        Operator::Multiply => {
            let mut product = RawBson::Int32(1);
            for value in values {
                product = binary(
                    operator,
                    vec![product, value],
                    |a, b| a * b,
                    |a, b| a.checked_mul(b),
                )?
                .expect("numeric result");
            }
            Ok(Some(product))
        }
        Operator::Divide => {
            if values.len() != 2 {
                return Err(CommandError::new(
                    16020,
                    "$divide takes exactly 2 arguments",
                ));
            }
            let width = check_numeric(operator, &values)?;
            let divisor = as_number(&values[1]).to_f64();
            if divisor == 0.0 {
                return Err(CommandError::new(2, "can't $divide by zero"));
            }
            let quotient = as_number(&values[0]).to_f64() / divisor;
            Ok(Some(float_result(quotient, width.max(Width::Double))))
        }
        Operator::Mod => {
            if values.len() == 2 && integer_of(&values[1]) == Some(0) {
                return Err(CommandError::new(16610, "can't $mod by zero"));
            }
            binary(operator, values, |a, b| a % b, |a, b| a.checked_rem(b))
        }
        _ => unreachable!("only arithmetic operators are routed here"),
    }
}

fn check_numeric(operator: Operator, values: &[RawBson]) -> CommandResult<Width> {
    let mut width = Width::Int32;
    for value in values {
        let w = width_of(value).ok_or_else(|| non_numeric(operator, value))?;
        if w > width {
            width = w;
        }
    }
    Ok(width)
}

fn add(values: Vec<RawBson>) -> CommandResult<Option<RawBson>> {
    let mut date: Option<i64> = None;
    let mut numbers = Vec::new();
    for value in values {
        match value {
            RawBson::DateTime(d) => {
                if date.is_some() {
                    return Err(CommandError::new(
                        16612,
                        "only one date allowed in an $add expression",
                    ));
                }
                date = Some(d.timestamp_millis());
            }
            other => numbers.push(other),
        }
    }
    let width = check_numeric(Operator::Add, &numbers)?;
    if let Some(millis) = date {
        let offset: f64 = numbers.iter().map(|n| as_number(n).to_f64()).sum();
        return Ok(Some(RawBson::DateTime(DateTime::from_millis(
            millis + offset.round() as i64,
        ))));
    }
    if width <= Width::Int64 {
        let sum: i128 = numbers
            .iter()
            .map(|n| integer_of(n).expect("integer"))
            .sum();
        return Ok(Some(integer_result(sum, width)));
    }
    let sum: f64 = numbers.iter().map(|n| as_number(n).to_f64()).sum();
    Ok(Some(float_result(sum, width)))
}

fn binary(
    operator: Operator,
    values: Vec<RawBson>,
    float_op: fn(f64, f64) -> f64,
    int_op: fn(i128, i128) -> Option<i128>,
) -> CommandResult<Option<RawBson>> {
    if values.len() != 2 {
        return Err(CommandError::new(
            16020,
            format!("{operator:?} takes exactly 2 arguments"),
        ));
    }
    if operator == Operator::Subtract {
        if let (RawBson::DateTime(a), b) = (&values[0], &values[1]) {
            return Ok(Some(match b {
                RawBson::DateTime(b) => RawBson::Int64(a.timestamp_millis() - b.timestamp_millis()),
                other => {
                    let offset = Number::from_raw(other.as_raw_bson_ref())
                        .ok_or_else(|| non_numeric(operator, other))?
                        .to_f64();
                    RawBson::DateTime(DateTime::from_millis(
                        a.timestamp_millis() - offset.round() as i64,
                    ))
                }
            }));
        }
    }
    let width = check_numeric(operator, &values)?;
    if width <= Width::Int64 {
        let a = integer_of(&values[0]).expect("integer");
        let b = integer_of(&values[1]).expect("integer");
        if let Some(result) = int_op(a, b) {
            return Ok(Some(integer_result(result, width)));
        }
    }
    let a = as_number(&values[0]).to_f64();
    let b = as_number(&values[1]).to_f64();
    Ok(Some(float_result(float_op(a, b), width.max(Width::Double))))
}

/// Evaluates `$abs`.
pub fn abs(value: Option<RawBson>) -> CommandResult<Option<RawBson>> {
    Ok(Some(match value {
        None | Some(RawBson::Null) => RawBson::Null,
        Some(RawBson::Int32(v)) => integer_result((v as i128).abs(), Width::Int32),
        Some(RawBson::Int64(v)) => integer_result((v as i128).abs(), Width::Int64),
        Some(RawBson::Double(v)) => RawBson::Double(v.abs()),
        Some(RawBson::Decimal128(v)) => {
            let mut bytes = v.bytes();
            bytes[15] &= 0x7f;
            RawBson::Decimal128(Decimal128::from_bytes(bytes))
        }
        Some(other) => return Err(non_numeric(Operator::Abs, &other)),
    }))
}

/// Adds two numbers for accumulators (`$sum`, `$avg`), promoting as `$add` does.
pub fn add_numbers(a: &RawBson, b: &RawBson) -> RawBson {
    add(vec![a.clone(), b.clone()])
        .ok()
        .flatten()
        .unwrap_or(RawBson::Int32(0))
}

/// Divides a sum by a count for `$avg`: a double, or a decimal when the sum is a decimal.
pub fn average(sum: &RawBson, count: usize) -> RawBson {
    let value = as_number(sum).to_f64() / count as f64;
    if matches!(sum, RawBson::Decimal128(_)) {
        RawBson::Decimal128(decimal_from_f64(value))
    } else {
        RawBson::Double(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int32_addition_widens_on_overflow() {
        let sum = evaluate(
            Operator::Add,
            vec![Some(RawBson::Int32(i32::MAX)), Some(RawBson::Int32(1))],
        )
        .unwrap();
        assert_eq!(sum, Some(RawBson::Int64(i32::MAX as i64 + 1)));
    }

    #[test]
    fn null_operand_gives_null() {
        let result = evaluate(Operator::Multiply, vec![Some(RawBson::Int32(2)), None]).unwrap();
        assert_eq!(result, Some(RawBson::Null));
    }

    #[test]
    fn divide_returns_double() {
        let result = evaluate(
            Operator::Divide,
            vec![Some(RawBson::Int32(7)), Some(RawBson::Int32(2))],
        )
        .unwrap();
        assert_eq!(result, Some(RawBson::Double(3.5)));
    }
}
