//! The `$group` stage and the accumulators it shares with `$bucketAuto` and the array forms of
//! `$sum`, `$avg`, `$min` and `$max`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bson::{RawArrayBuf, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};

use super::arith::{add_numbers, average};
use super::expr::{Expression, Operator};
use crate::error::{CommandError, CommandResult};
use crate::query::order::{compare_owned, OrderedValue};

/// The running state of one accumulator for one group.
#[derive(Clone, Debug)]
pub enum Accumulator {
    Sum(RawBson),
    Avg { sum: RawBson, count: usize },
    Min(Option<RawBson>),
    Max(Option<RawBson>),
    First(Option<Option<RawBson>>),
    Last(Option<RawBson>),
    Push(RawArrayBuf),
    AddToSet(BTreeSet<OrderedValue>),
}

impl Accumulator {
    /// Creates the accumulator named by an expression operator (`$sum`, `$avg`, `$min`, `$max`).
    pub fn for_operator(operator: Operator) -> Accumulator {
        match operator {
            Operator::Sum => Accumulator::Sum(RawBson::Int32(0)),
            Operator::Avg => Accumulator::Avg {
                sum: RawBson::Int32(0),
                count: 0,
            },
            Operator::Min => Accumulator::Min(None),
            _ => Accumulator::Max(None),
        }
    }

    fn named(name: &str) -> Option<Accumulator> {
        Some(match name {
            "$sum" => Accumulator::Sum(RawBson::Int32(0)),
            "$avg" => Accumulator::Avg {
                sum: RawBson::Int32(0),
                count: 0,
            },
            "$min" => Accumulator::Min(None),
            "$max" => Accumulator::Max(None),
            "$first" => Accumulator::First(None),
            "$last" => Accumulator::Last(None),
            "$push" => Accumulator::Push(RawArrayBuf::new()),
            "$addToSet" => Accumulator::AddToSet(BTreeSet::new()),
            _ => return None,
        })
    }

    /// Adds one evaluated input; `None` is a missing value.
    pub fn add(&mut self, value: Option<&RawBson>) {
        let is_number = |v: &RawBson| {
            matches!(
                v,
                RawBson::Int32(_) | RawBson::Int64(_) | RawBson::Double(_) | RawBson::Decimal128(_)
            )
        };
        let is_nullish = |v: Option<&RawBson>| {
            matches!(v, None | Some(RawBson::Null) | Some(RawBson::Undefined))
        };
        match self {
            Accumulator::Sum(sum) => {
                if let Some(v) = value.filter(|v| is_number(v)) {
                    *sum = add_numbers(sum, v);
                }
            }
            Accumulator::Avg { sum, count } => {
                if let Some(v) = value.filter(|v| is_number(v)) {
                    *sum = add_numbers(sum, v);
                    *count += 1;
                }
            }
            Accumulator::Min(_) | Accumulator::Max(_) => {
                if is_nullish(value) {
                    return;
                }
                let value = value.expect("checked");
                let want_less = matches!(self, Accumulator::Min(_));
                let current = match self {
                    Accumulator::Min(c) | Accumulator::Max(c) => c,
                    _ => unreachable!(),
                };
                let replace = match current {
                    None => true,
                    Some(existing) => {
                        let order = compare_owned(value, existing);
                        if want_less {
                            order.is_lt()
                        } else {
                            order.is_gt()
                        }
                    }
                };
                if replace {
                    *current = Some(value.clone());
                }
            }
            Accumulator::First(first) => {
                if first.is_none() {
                    *first = Some(value.cloned());
                }
            }
            Accumulator::Last(last) => *last = value.cloned(),
            Accumulator::Push(items) => {
                if let Some(v) = value {
                    items.push(v.clone());
                }
            }
            Accumulator::AddToSet(items) => {
                if let Some(v) = value {
                    items.insert(OrderedValue(v.clone()));
                }
            }
        }
    }

    pub fn finish(self) -> RawBson {
        match self {
            Accumulator::Sum(sum) => sum,
            Accumulator::Avg { sum, count } => {
                if count == 0 {
                    RawBson::Null
                } else {
                    average(&sum, count)
                }
            }
            Accumulator::Min(v) | Accumulator::Max(v) | Accumulator::Last(v) => {
                v.unwrap_or(RawBson::Null)
            }
            Accumulator::First(v) => v.flatten().unwrap_or(RawBson::Null),
            Accumulator::Push(items) => RawBson::Array(items),
            Accumulator::AddToSet(items) => {
                let mut array = RawArrayBuf::new();
                for item in items {
                    array.push(item.0);
                }
                RawBson::Array(array)
            }
        }
    }
}

/// One output field of `$group` or `$bucketAuto`: its name, accumulator and input expression.
#[derive(Clone, Debug)]
pub struct AccumulatorSpec {
    pub name: String,
    pub initial: Accumulator,
    pub input: Expression,
}

/// Parses `{name: {$accumulator: expression}}` entries, skipping the keys in `reserved`.
pub fn parse_accumulators(
    spec: &RawDocument,
    reserved: &[&str],
) -> CommandResult<Vec<AccumulatorSpec>> {
    let mut out = Vec::new();
    for element in spec.iter() {
        let (name, value) = element?;
        if reserved.contains(&name) {
            continue;
        }
        let RawBsonRef::Document(body) = value else {
            return Err(CommandError::new(
                40234,
                format!("The field '{name}' must be an accumulator object"),
            ));
        };
        let mut fields = body.iter();
        let Some(Ok((operator, argument))) = fields.next() else {
            return Err(CommandError::new(
                40234,
                format!("The field '{name}' must be an accumulator object"),
            ));
        };
        if fields.next().is_some() {
            return Err(CommandError::new(
                40238,
                format!("The field '{name}' must specify one accumulator"),
            ));
        }
        let (initial, input) = if operator == "$count" {
            (
                Accumulator::Sum(RawBson::Int32(0)),
                Expression::Literal(RawBson::Int32(1)),
            )
        } else {
            let initial = Accumulator::named(operator).ok_or_else(|| {
                CommandError::new(15952, format!("unknown group operator '{operator}'"))
            })?;
            (initial, Expression::parse(argument)?)
        };
        out.push(AccumulatorSpec {
            name: name.to_string(),
            initial,
            input,
        });
    }
    Ok(out)
}

/// Runs `$group`. Groups are emitted in the order their keys were first seen.
pub fn group(
    documents: Vec<Arc<RawDocumentBuf>>,
    spec: &RawDocument,
) -> CommandResult<Vec<Arc<RawDocumentBuf>>> {
    let key_expression = match spec.get("_id")? {
        Some(value) => Expression::parse(value)?,
        None => {
            return Err(CommandError::new(
                15955,
                "a group specification must include an _id",
            ))
        }
    };
    let accumulators = parse_accumulators(spec, &["_id"])?;
    let mut index: BTreeMap<OrderedValue, usize> = BTreeMap::new();
    let mut groups: Vec<(RawBson, Vec<Accumulator>)> = Vec::new();
    for document in &documents {
        let key = key_expression.evaluate(document)?.unwrap_or(RawBson::Null);
        let slot = *index.entry(OrderedValue(key.clone())).or_insert_with(|| {
            groups.push((
                key,
                accumulators.iter().map(|a| a.initial.clone()).collect(),
            ));
            groups.len() - 1
        });
        for (spec, state) in accumulators.iter().zip(groups[slot].1.iter_mut()) {
            let value = spec.input.evaluate(document)?;
            state.add(value.as_ref());
        }
    }
    Ok(groups
        .into_iter()
        .map(|(key, states)| {
            let mut out = RawDocumentBuf::new();
            out.append("_id", key);
            for (spec, state) in accumulators.iter().zip(states) {
                out.append(&spec.name, state.finish());
            }
            Arc::new(out)
        })
        .collect())
}

/// Error for a `$group` argument that is not a document.
pub fn group_spec_error() -> CommandError {
    CommandError::new(15947, "a group's fields must be specified in an object")
}
