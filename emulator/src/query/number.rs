//! Exact comparison of BSON numbers across Int32, Int64, Double and Decimal128.
//!
//! MongoDB compares numbers by mathematical value whatever their type, so Int64 2^53 + 1 is
//! greater than Double 2^53 even though converting the integer to a double would round it down.
//! Decimal128 values are compared through arbitrary-precision integers (`num-bigint`), because an
//! exact comparison between a binary double and a decimal needs more than 128 bits.

use std::cmp::Ordering;

use bson::{Decimal128, RawBsonRef};
use num_bigint::BigInt;

/// A BSON number reduced to the forms that compare exactly.
#[derive(Clone, Copy, Debug)]
pub enum Number {
    Int(i64),
    Double(f64),
    Decimal(Decimal),
}

/// A decoded Decimal128 (IEEE 754-2008 BID encoding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decimal {
    NaN,
    Infinity {
        negative: bool,
    },
    Finite {
        negative: bool,
        coefficient: u128,
        exponent: i32,
    },
}

const DECIMAL_EXPONENT_BIAS: i32 = 6176;
/// 10^34 - 1: a Decimal128 coefficient has at most 34 decimal digits; larger ones decode as 0.
const DECIMAL_MAX_COEFFICIENT: u128 = 9_999_999_999_999_999_999_999_999_999_999_999;

impl Decimal {
    /// Decodes the 16 little-endian bytes of a Decimal128.
    pub fn decode(value: &Decimal128) -> Decimal {
        let bytes = value.bytes();
        let low = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
        let high = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let negative = high >> 63 == 1;
        let combination = (high >> 58) & 0x1f;
        if combination == 0x1f {
            return Decimal::NaN;
        }
        if combination == 0x1e {
            return Decimal::Infinity { negative };
        }
        let (biased_exponent, coefficient) = if (high >> 61) & 0b11 == 0b11 {
            // The large-coefficient form always exceeds 10^34 - 1, so it is non-canonical and
            // its value is zero.
            (((high >> 47) & 0x3fff) as i32, 0u128)
        } else {
            let coefficient = (((high & 0x1_ffff_ffff_ffff) as u128) << 64) | low as u128;
            let coefficient = if coefficient > DECIMAL_MAX_COEFFICIENT {
                0
            } else {
                coefficient
            };
            (((high >> 49) & 0x3fff) as i32, coefficient)
        };
        Decimal::Finite {
            negative,
            coefficient,
            exponent: biased_exponent - DECIMAL_EXPONENT_BIAS,
        }
    }

    /// Encodes a finite decimal with a coefficient below 10^34 (the caller guarantees the range).
    pub fn encode(negative: bool, coefficient: u128, exponent: i32) -> Decimal128 {
        let biased = (exponent + DECIMAL_EXPONENT_BIAS) as u64;
        let high = ((negative as u64) << 63) | (biased << 49) | ((coefficient >> 64) as u64);
        let low = coefficient as u64;
        let mut bytes = [0u8; 16];
        bytes[0..8].copy_from_slice(&low.to_le_bytes());
        bytes[8..16].copy_from_slice(&high.to_le_bytes());
        Decimal128::from_bytes(bytes)
    }

    /// Returns the nearest double, used where arithmetic needs a binary value.
    pub fn to_f64(self) -> f64 {
        match self {
            Decimal::NaN => f64::NAN,
            Decimal::Infinity { negative } => {
                if negative {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            }
            Decimal::Finite {
                negative,
                coefficient,
                exponent,
            } => {
                let magnitude: f64 = format!("{coefficient}e{exponent}").parse().unwrap_or(0.0);
                if negative {
                    -magnitude
                } else {
                    magnitude
                }
            }
        }
    }
}

impl Number {
    /// Returns the number in `value`, or `None` when it is not a numeric BSON type.
    pub fn from_raw(value: RawBsonRef<'_>) -> Option<Number> {
        match value {
            RawBsonRef::Int32(v) => Some(Number::Int(v as i64)),
            RawBsonRef::Int64(v) => Some(Number::Int(v)),
            RawBsonRef::Double(v) => Some(Number::Double(v)),
            RawBsonRef::Decimal128(v) => Some(Number::Decimal(Decimal::decode(&v))),
            _ => None,
        }
    }

    pub fn is_nan(self) -> bool {
        match self {
            Number::Int(_) => false,
            Number::Double(v) => v.is_nan(),
            Number::Decimal(d) => d == Decimal::NaN,
        }
    }

    pub fn to_f64(self) -> f64 {
        match self {
            Number::Int(v) => v as f64,
            Number::Double(v) => v,
            Number::Decimal(d) => d.to_f64(),
        }
    }

    /// Compares two numbers by value. NaN equals NaN and sorts below every other number, as in
    /// MongoDB's sort order.
    pub fn total_cmp(self, other: Number) -> Ordering {
        match (self.is_nan(), other.is_nan()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(&b),
            (Number::Double(a), Number::Double(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Number::Int(a), Number::Double(b)) => compare_int_double(a, b),
            (Number::Double(a), Number::Int(b)) => compare_int_double(b, a).reverse(),
            (a, b) => compare_exact(a, b),
        }
    }
}

/// Compares an integer with a non-NaN double without rounding either.
fn compare_int_double(int: i64, double: f64) -> Ordering {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if double >= TWO_POW_63 {
        return Ordering::Less;
    }
    if double < -TWO_POW_63 {
        return Ordering::Greater;
    }
    // Inside (-2^63, 2^63) the truncated double is exactly representable as an i64.
    let truncated = double.trunc();
    match int.cmp(&(truncated as i64)) {
        Ordering::Equal => {
            if double > truncated {
                Ordering::Less
            } else if double < truncated {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        other => other,
    }
}

/// An exact finite value `sign * mantissa * 2^exp2 * 10^exp10`, or an infinity.
enum Exact {
    Infinite {
        negative: bool,
    },
    Finite {
        mantissa: BigInt,
        exp2: i32,
        exp10: i32,
    },
}

fn to_exact(number: Number) -> Exact {
    match number {
        Number::Int(v) => Exact::Finite {
            mantissa: BigInt::from(v),
            exp2: 0,
            exp10: 0,
        },
        Number::Double(v) => {
            if v.is_infinite() {
                return Exact::Infinite { negative: v < 0.0 };
            }
            let bits = v.to_bits();
            let negative = bits >> 63 == 1;
            let biased = ((bits >> 52) & 0x7ff) as i32;
            let fraction = bits & 0x000f_ffff_ffff_ffff;
            let (mantissa, exp2) = if biased == 0 {
                (fraction, -1074)
            } else {
                (fraction | (1 << 52), biased - 1075)
            };
            let mantissa = BigInt::from(mantissa);
            Exact::Finite {
                mantissa: if negative { -mantissa } else { mantissa },
                exp2,
                exp10: 0,
            }
        }
        Number::Decimal(d) => match d {
            Decimal::NaN => unreachable!("NaN is handled before exact comparison"),
            Decimal::Infinity { negative } => Exact::Infinite { negative },
            Decimal::Finite {
                negative,
                coefficient,
                exponent,
            } => {
                let mantissa = BigInt::from(coefficient);
                Exact::Finite {
                    mantissa: if negative { -mantissa } else { mantissa },
                    exp2: 0,
                    exp10: exponent,
                }
            }
        },
    }
}

fn compare_exact(a: Number, b: Number) -> Ordering {
    match (to_exact(a), to_exact(b)) {
        (Exact::Infinite { negative: x }, Exact::Infinite { negative: y }) => y.cmp(&x),
        (Exact::Infinite { negative }, _) => {
            if negative {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (_, Exact::Infinite { negative }) => {
            if negative {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (
            Exact::Finite {
                mantissa: ma,
                exp2: a2,
                exp10: a10,
            },
            Exact::Finite {
                mantissa: mb,
                exp2: b2,
                exp10: b10,
            },
        ) => {
            // Scale both sides by the same powers of two and ten so every exponent is >= 0.
            let shift2 = -(a2.min(b2).min(0));
            let shift10 = -(a10.min(b10).min(0));
            let scale = |m: BigInt, e2: i32, e10: i32| -> BigInt {
                let m = m << ((e2 + shift2) as usize);
                m * BigInt::from(10u8).pow((e10 + shift10) as u32)
            };
            scale(ma, a2, a10).cmp(&scale(mb, b2, b10))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(negative: bool, coefficient: u128, exponent: i32) -> Number {
        Number::Decimal(Decimal::decode(&Decimal::encode(
            negative,
            coefficient,
            exponent,
        )))
    }

    #[test]
    fn int64_above_two_pow_53_beats_double() {
        let big = Number::Int((1 << 53) + 1);
        let double = Number::Double(9_007_199_254_740_992.0);
        assert_eq!(big.total_cmp(double), Ordering::Greater);
        assert_eq!(double.total_cmp(big), Ordering::Less);
        assert_eq!(
            Number::Int(1 << 53).total_cmp(double),
            Ordering::Equal,
            "2^53 is exact in both types"
        );
    }

    #[test]
    fn fractions_and_extremes_against_ints() {
        assert_eq!(
            Number::Int(2).total_cmp(Number::Double(2.5)),
            Ordering::Less
        );
        assert_eq!(
            Number::Int(-2).total_cmp(Number::Double(-2.5)),
            Ordering::Greater
        );
        assert_eq!(
            Number::Int(i64::MAX).total_cmp(Number::Double(9.3e18)),
            Ordering::Less
        );
        assert_eq!(
            Number::Int(i64::MIN).total_cmp(Number::Double(-9.3e18)),
            Ordering::Greater
        );
        assert_eq!(
            Number::Int(5).total_cmp(Number::Double(f64::INFINITY)),
            Ordering::Less
        );
    }

    #[test]
    fn nan_sorts_below_everything() {
        let nan = Number::Double(f64::NAN);
        assert_eq!(
            nan.total_cmp(Number::Double(f64::NEG_INFINITY)),
            Ordering::Less
        );
        assert_eq!(nan.total_cmp(Number::Double(f64::NAN)), Ordering::Equal);
        let decimal_nan = Number::Decimal(Decimal::NaN);
        assert_eq!(decimal_nan.total_cmp(nan), Ordering::Equal);
    }

    #[test]
    fn decimal_with_34_digits_is_not_zero() {
        let pi: Decimal128 = "3.141592653589793238462643383279503".parse().unwrap();
        let pi = Number::Decimal(Decimal::decode(&pi));
        assert_eq!(pi.total_cmp(Number::Int(0)), Ordering::Greater);
        assert_eq!(pi.total_cmp(Number::Double(3.0)), Ordering::Greater);
        assert_eq!(pi.total_cmp(Number::Double(4.0)), Ordering::Less);
    }

    #[test]
    fn decimal_compares_exactly() {
        // 0.1 as a decimal is exactly one tenth; the double 0.1 is slightly above it.
        assert_eq!(
            dec(false, 1, -1).total_cmp(Number::Double(0.1)),
            Ordering::Less
        );
        assert_eq!(
            dec(false, 25, -1).total_cmp(Number::Double(2.5)),
            Ordering::Equal
        );
        assert_eq!(dec(false, 3, 0).total_cmp(Number::Int(3)), Ordering::Equal);
        assert_eq!(dec(true, 3, 0).total_cmp(Number::Int(-2)), Ordering::Less);
        assert_eq!(
            dec(false, 9_007_199_254_740_993, 0).total_cmp(Number::Double(9_007_199_254_740_992.0)),
            Ordering::Greater
        );
        assert_eq!(
            dec(false, 1, 400).total_cmp(Number::Double(f64::MAX)),
            Ordering::Greater
        );
    }

    #[test]
    fn decimal_round_trips_through_encoding() {
        let value = Decimal::encode(true, 12345, -3);
        assert_eq!(
            Decimal::decode(&value),
            Decimal::Finite {
                negative: true,
                coefficient: 12345,
                exponent: -3
            }
        );
        assert_eq!(value.to_string(), "-12.345");
    }
}
