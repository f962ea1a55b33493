//! Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`).
//!
//! `k8s-openapi` keeps a quantity as the string the client sent, so nothing checks it on decode. kube-apiserver
//! refuses a bad quantity while decoding, with the messages below; the API server calls
//! [`Quantities::check_quantities`] on every decoded object to do the same, and validation compares
//! quantities with [`ParsedQuantity`].
//!
//! Design decision: the value is kept exactly, as a decimal coefficient (a digit string) and a power of ten,
//! after Go's rounding up to nano units, so `1e100` or `0.000000000001` behave as in Go without a big-number
//! dependency. Integer views (`value`, `milli_value`) saturate at the bounds of `i128`.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::storage::v1 as storage;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// Why a quantity string was refused; `Display` gives kube-apiserver's exact text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not follow the quantity grammar (Go's `ErrFormatWrong`).
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    /// The number part could not be read (Go's `ErrNumeric`).
    #[error("unable to parse quantity's numeric part")]
    Numeric,
    /// The suffix is not a known SI, binary or exponent suffix (Go's `ErrSuffix`).
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// How a quantity was written, which decides how it is printed back (Go's `resource.Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `1e3`, `12E-1`.
    DecimalExponent,
    /// `Ki`, `Mi`, ... `Ei`.
    BinarySI,
    /// `n`, `u`, `m`, ``, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSI,
}

/// A parsed quantity: exactly `(-1)^negative * coef * 10^exp`, rounded up (away from zero) to nano units.
#[derive(Debug, Clone)]
pub struct ParsedQuantity {
    negative: bool,
    /// Decimal digits without leading or trailing zeros; empty means zero.
    coef: Vec<u8>,
    exp: i64,
    format: Format,
}

/// Parse a quantity string exactly as Go's `resource.ParseQuantity` does.
pub fn parse_quantity(s: &str) -> Result<ParsedQuantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    let parts = split_quantity(s)?;
    let (base, exponent, format) = interpret_suffix(parts.suffix).ok_or(QuantityError::Suffix)?;
    // Go takes the slow (arbitrary precision) path for these; it needs at least one digit to parse.
    let digits: Vec<u8> = parts.num.bytes().chain(parts.denom.bytes()).map(|b| b - b'0').collect();
    let slow_path = match format {
        Format::BinarySI => !(exponent >= 0 && parts.denom.is_empty()),
        _ => parts.num.len() + parts.denom.len() > 18,
    };
    if slow_path && !parts.had_digits {
        return Err(QuantityError::Numeric);
    }
    let mut q = ParsedQuantity { negative: !parts.positive, coef: digits, exp: -(parts.denom.len() as i64), format };
    if base == 10 {
        q.exp += i64::from(exponent);
    } else {
        // Binary exponents are 0..=60, so the multiplier fits in u64.
        q.coef = mul_small(&q.coef, 1u64 << exponent.clamp(0, 60));
    }
    q.normalize();
    q.round_up_to_nano();
    if format == Format::BinarySI {
        // Go caps binary quantities at MaxInt64 and shows tiny ones as decimal.
        let max = ParsedQuantity::from_i128(i128::from(i64::MAX), Format::BinarySI);
        if q.cmp_magnitude(&max) == Ordering::Greater {
            q.coef = max.coef;
            q.exp = max.exp;
        }
        if q.exp < 0 && (q.coef.len() as i64 + q.exp) <= 0 {
            q.format = Format::DecimalSI;
        }
    }
    if q.coef.is_empty() {
        q.negative = false;
    }
    Ok(q)
}

struct Parts<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
    had_digits: bool,
}

/// Go's `parseQuantityString`: sign, digits, optional `.digits`, then the suffix.
fn split_quantity(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    let mut had_digits = false;
    while pos < end && b[pos] == b'0' {
        pos += 1;
        had_digits = true;
    }
    if pos >= end {
        return Ok(Parts { positive, num: "", denom: "", suffix: "", had_digits: true });
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[num_start..pos];
    had_digits |= !num.is_empty();
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let d_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[d_start..pos];
        had_digits |= !denom.is_empty();
        if pos >= end {
            return Ok(Parts { positive, num, denom, suffix: "", had_digits });
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::FormatWrong);
    }
    // A number with no digit at all (`.`, `-`) is zero in Go's fast path.
    Ok(Parts { positive, num, denom, suffix: &s[suffix_start..], had_digits })
}

/// Go's `quantitySuffixer.interpret`: base, exponent and format of a suffix.
fn interpret_suffix(suffix: &str) -> Option<(u32, i32, Format)> {
    let dec = |e| Some((10, e, Format::DecimalSI));
    let bin = |e| Some((2, e, Format::BinarySI));
    match suffix {
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "" => dec(0),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let parsed: i64 = s[1..].parse().ok()?;
            // Go converts with int32(parsed), which wraps.
            Some((10, parsed as i32, Format::DecimalExponent))
        }
        _ => None,
    }
}

/// Multiply a big-endian decimal digit vector by a small number.
fn mul_small(digits: &[u8], m: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(digits.len() + 20);
    let mut carry: u128 = 0;
    for &d in digits.iter().rev() {
        let v = u128::from(d) * u128::from(m) + carry;
        out.push((v % 10) as u8);
        carry = v / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    out
}

/// Add one to a big-endian decimal digit vector.
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, 1);
}

impl ParsedQuantity {
    fn from_i128(v: i128, format: Format) -> Self {
        let mut q = ParsedQuantity {
            negative: v < 0,
            coef: v.unsigned_abs().to_string().bytes().map(|b| b - b'0').collect(),
            exp: 0,
            format,
        };
        q.normalize();
        q
    }

    fn normalize(&mut self) {
        let lead = self.coef.iter().take_while(|&&d| d == 0).count();
        self.coef.drain(..lead);
        while self.coef.last() == Some(&0) {
            self.coef.pop();
            self.exp += 1;
        }
        if self.coef.is_empty() {
            self.exp = 0;
        }
    }

    /// Go rounds every non-zero value up (away from zero) to a whole number of nano units.
    fn round_up_to_nano(&mut self) {
        if self.exp >= -9 {
            return;
        }
        let drop = usize::try_from(-9 - self.exp).unwrap_or(usize::MAX);
        if drop >= self.coef.len() {
            self.coef = vec![1];
        } else {
            let keep = self.coef.len() - drop;
            let rest_nonzero = self.coef[keep..].iter().any(|&d| d != 0);
            self.coef.truncate(keep);
            if rest_nonzero {
                increment(&mut self.coef);
            }
        }
        self.exp = -9;
        self.normalize();
    }

    /// The format the quantity was written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.coef.is_empty()
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative && !self.coef.is_empty()
    }

    /// The value in units of `10^scale`, rounded away from zero, saturating at the bounds of `i128`
    /// (Go's `ScaledValue`).
    pub fn scaled_value(&self, scale: i64) -> i128 {
        if self.coef.is_empty() {
            return 0;
        }
        let shift = self.exp - scale;
        let mut magnitude: i128 = 0;
        let mut overflow = false;
        let mut push = |m: &mut i128, d: u8| match m.checked_mul(10).and_then(|v| v.checked_add(i128::from(d))) {
            Some(v) => *m = v,
            None => overflow = true,
        };
        if shift >= 0 {
            if shift > 40 {
                overflow = true;
            } else {
                for &d in &self.coef {
                    push(&mut magnitude, d);
                }
                for _ in 0..shift {
                    push(&mut magnitude, 0);
                }
            }
        } else {
            let cut = usize::try_from(-shift).unwrap_or(usize::MAX);
            let keep = self.coef.len().saturating_sub(cut);
            for &d in &self.coef[..keep] {
                push(&mut magnitude, d);
            }
            // coef has no trailing zeros, so a cut-off part is never all zeros: round up.
            if !overflow {
                magnitude = magnitude.saturating_add(1);
            }
        }
        let magnitude = if overflow { i128::MAX } else { magnitude };
        if self.negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// The value in whole units (bytes for storage), rounded up as Go's `Value()`.
    pub fn value(&self) -> i128 {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded up as Go's `MilliValue()`.
    pub fn milli_value(&self) -> i128 {
        self.scaled_value(-3)
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.coef.is_empty(), other.coef.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let top_a = self.coef.len() as i64 + self.exp;
        let top_b = other.coef.len() as i64 + other.exp;
        top_a.cmp(&top_b).then_with(|| {
            let n = self.coef.len().max(other.coef.len());
            let a = self.coef.iter().copied().chain(std::iter::repeat(0)).take(n);
            let b = other.coef.iter().copied().chain(std::iter::repeat(0)).take(n);
            a.cmp(b)
        })
    }

    /// The canonical string, as Go's `Quantity.String()` prints a quantity it did not keep verbatim:
    /// `1Gi`, `500M`, `1500m`, `1e3`.
    pub fn to_canonical(&self) -> String {
        if self.coef.is_empty() {
            return "0".to_string();
        }
        let sign = if self.negative { "-" } else { "" };
        let mut format = self.format;
        if format == Format::BinarySI {
            let small = self.cmp_magnitude(&ParsedQuantity::from_i128(1024, Format::DecimalSI)) == Ordering::Less;
            if small || self.exp < 0 {
                format = Format::DecimalSI;
            }
        }
        if format == Format::BinarySI {
            let mut v = self.value().unsigned_abs();
            let mut e = 0;
            while v >= 1024 && v.is_multiple_of(1024) && e < 6 {
                v /= 1024;
                e += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][e];
            return format!("{sign}{v}{suffix}");
        }
        // Lower the exponent to a multiple of three, as Go's AsCanonicalBytes does.
        let mut digits = self.coef.clone();
        let mut exp = self.exp;
        while exp.rem_euclid(3) != 0 {
            digits.push(0);
            exp -= 1;
        }
        let suffix = if format == Format::DecimalExponent {
            if exp == 0 {
                String::new()
            } else {
                format!("e{exp}")
            }
        } else {
            // Above exa there is no suffix; Go prints a bare (wrong) number there, kvol pads up to `E`.
            while exp > 18 {
                digits.extend([0, 0, 0]);
                exp -= 3;
            }
            match exp {
                -9 => "n",
                -6 => "u",
                -3 => "m",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                18 => "E",
                _ => "",
            }
            .to_string()
        };
        let number: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        format!("{sign}{number}{suffix}")
    }
}

impl PartialEq for ParsedQuantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ParsedQuantity {}

impl PartialOrd for ParsedQuantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ParsedQuantity {
    /// Compares values, ignoring the format (`1Ki == 1024`).
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.is_negative(), other.is_negative()) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl fmt::Display for ParsedQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical())
    }
}

impl std::str::FromStr for ParsedQuantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s)
    }
}

/// Parse a `k8s-openapi` quantity.
pub fn parse(q: &Quantity) -> Result<ParsedQuantity, QuantityError> {
    parse_quantity(&q.0)
}

/// The first invalid quantity in an object, with its field path, for the API server's decode step.
pub trait Quantities {
    /// `Err((path, error))` for the first quantity that does not parse, e.g. `("spec.capacity[storage]", ..)`.
    fn check_quantities(&self) -> Result<(), (String, QuantityError)>;
}

type Check = Result<(), (String, QuantityError)>;

fn check_map(map: Option<&BTreeMap<String, Quantity>>, path: &str) -> Check {
    for (k, v) in map.into_iter().flatten() {
        parse(v).map_err(|e| (format!("{path}[{k}]"), e))?;
    }
    Ok(())
}

fn check_requirements(r: Option<&core::ResourceRequirements>, path: &str) -> Check {
    if let Some(r) = r {
        check_map(r.limits.as_ref(), &format!("{path}.limits"))?;
        check_map(r.requests.as_ref(), &format!("{path}.requests"))?;
    }
    Ok(())
}

fn check_volume_resources(r: Option<&core::VolumeResourceRequirements>, path: &str) -> Check {
    if let Some(r) = r {
        check_map(r.limits.as_ref(), &format!("{path}.limits"))?;
        check_map(r.requests.as_ref(), &format!("{path}.requests"))?;
    }
    Ok(())
}

impl Quantities for core::PersistentVolume {
    fn check_quantities(&self) -> Check {
        if let Some(spec) = &self.spec {
            check_map(spec.capacity.as_ref(), "spec.capacity")?;
        }
        Ok(())
    }
}

impl Quantities for core::PersistentVolumeClaim {
    fn check_quantities(&self) -> Check {
        if let Some(spec) = &self.spec {
            check_volume_resources(spec.resources.as_ref(), "spec.resources")?;
        }
        if let Some(status) = &self.status {
            check_map(status.capacity.as_ref(), "status.capacity")?;
            check_map(status.allocated_resources.as_ref(), "status.allocatedResources")?;
        }
        Ok(())
    }
}

impl Quantities for core::Pod {
    fn check_quantities(&self) -> Check {
        let Some(spec) = &self.spec else { return Ok(()) };
        check_map(spec.overhead.as_ref(), "spec.overhead")?;
        check_requirements(spec.resources.as_ref(), "spec.resources")?;
        for (i, c) in spec.containers.iter().enumerate() {
            check_requirements(c.resources.as_ref(), &format!("spec.containers[{i}].resources"))?;
        }
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            check_requirements(c.resources.as_ref(), &format!("spec.initContainers[{i}].resources"))?;
        }
        for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
            check_requirements(c.resources.as_ref(), &format!("spec.ephemeralContainers[{i}].resources"))?;
        }
        for (i, v) in spec.volumes.iter().flatten().enumerate() {
            if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
                parse(limit).map_err(|e| (format!("spec.volumes[{i}].emptyDir.sizeLimit"), e))?;
            }
            let claim_spec = v.ephemeral.as_ref().and_then(|e| e.volume_claim_template.as_ref()).map(|t| &t.spec);
            if let Some(s) = claim_spec {
                let path = format!("spec.volumes[{i}].ephemeral.volumeClaimTemplate.spec.resources");
                check_volume_resources(s.resources.as_ref(), &path)?;
            }
        }
        Ok(())
    }
}

impl Quantities for core::Node {
    fn check_quantities(&self) -> Check {
        if let Some(status) = &self.status {
            check_map(status.capacity.as_ref(), "status.capacity")?;
            check_map(status.allocatable.as_ref(), "status.allocatable")?;
        }
        Ok(())
    }
}

macro_rules! no_quantities {
    ($($t:ty),*) => {$(
        impl Quantities for $t {
            fn check_quantities(&self) -> Check {
                Ok(())
            }
        }
    )*};
}

no_quantities!(core::ConfigMap, core::Secret, core::Namespace, core::Event);
no_quantities!(storage::StorageClass, storage::CSIDriver, storage::CSINode);

impl Quantities for storage::VolumeAttachment {
    fn check_quantities(&self) -> Check {
        match self.spec.source.inline_volume_spec.as_ref() {
            Some(spec) => check_map(spec.capacity.as_ref(), "spec.source.inlineVolumeSpec.capacity"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        input: &'static str,
        canonical: &'static str,
        value: i128,
        milli: i128,
    }

    #[test]
    fn parses_and_prints_like_go() {
        let cases = [
            Case { input: "1Gi", canonical: "1Gi", value: 1 << 30, milli: 1000 << 30 },
            Case { input: "500M", canonical: "500M", value: 500_000_000, milli: 500_000_000_000 },
            Case { input: "1500m", canonical: "1500m", value: 2, milli: 1500 },
            Case { input: "1.5", canonical: "1500m", value: 2, milli: 1500 },
            Case { input: "0.1", canonical: "100m", value: 1, milli: 100 },
            Case { input: "1024Mi", canonical: "1Gi", value: 1 << 30, milli: 1000 << 30 },
            Case { input: "0.5Gi", canonical: "512Mi", value: 1 << 29, milli: 1000 << 29 },
            Case { input: "1000M", canonical: "1G", value: 1_000_000_000, milli: 1_000_000_000_000 },
            Case { input: "1e3", canonical: "1e3", value: 1000, milli: 1_000_000 },
            Case { input: "12E-1", canonical: "1200e-3", value: 2, milli: 1200 },
            Case { input: "+8Gi", canonical: "8Gi", value: 8 << 30, milli: 8000 << 30 },
            Case { input: "-1Ki", canonical: "-1Ki", value: -1024, milli: -1_024_000 },
            Case { input: "-1.5", canonical: "-1500m", value: -2, milli: -1500 },
            Case { input: "0", canonical: "0", value: 0, milli: 0 },
            Case { input: "000", canonical: "0", value: 0, milli: 0 },
            Case { input: "-", canonical: "0", value: 0, milli: 0 },
            Case { input: ".", canonical: "0", value: 0, milli: 0 },
            Case { input: ".Gi", canonical: "0", value: 0, milli: 0 },
            Case { input: "100Ki", canonical: "100Ki", value: 102_400, milli: 102_400_000 },
            Case { input: "1.5Gi", canonical: "1536Mi", value: 3 << 29, milli: 1000 * (3 << 29) },
            Case { input: "512", canonical: "512", value: 512, milli: 512_000 },
            Case { input: "1Ki", canonical: "1Ki", value: 1024, milli: 1_024_000 },
            Case { input: "0.000000000001", canonical: "1n", value: 1, milli: 1 },
            Case { input: "1n", canonical: "1n", value: 1, milli: 1 },
            Case { input: "30Gi", canonical: "30Gi", value: 30 << 30, milli: 1000 * (30 << 30) },
            Case {
                input: "10Ei",
                canonical: "9223372036854775807",
                value: i128::from(i64::MAX),
                milli: i128::from(i64::MAX) * 1000,
            },
            Case {
                input: "1E",
                canonical: "1E",
                value: 1_000_000_000_000_000_000,
                milli: 1_000_000_000_000_000_000_000,
            },
        ];
        for c in cases {
            let q = parse_quantity(c.input).unwrap_or_else(|e| panic!("{}: {e}", c.input));
            assert_eq!(q.to_canonical(), c.canonical, "canonical of {}", c.input);
            assert_eq!(q.value(), c.value, "value of {}", c.input);
            assert_eq!(q.milli_value(), c.milli, "milli of {}", c.input);
        }
    }

    #[test]
    fn refuses_what_go_refuses_with_its_messages() {
        let cases = [
            ("", QuantityError::FormatWrong),
            ("abc", QuantityError::FormatWrong),
            ("1 Gi", QuantityError::FormatWrong),
            ("1Gi ", QuantityError::FormatWrong),
            ("1.2.3", QuantityError::FormatWrong),
            ("1GB", QuantityError::FormatWrong),
            ("1Q", QuantityError::FormatWrong),
            ("1Gii", QuantityError::Suffix),
            ("1iG", QuantityError::Suffix),
            ("1e", QuantityError::Suffix),
            ("1ee3", QuantityError::Suffix),
        ];
        for (input, want) in cases {
            assert_eq!(parse_quantity(input).err(), Some(want), "{input:?}");
        }
        assert_eq!(
            QuantityError::FormatWrong.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn compares_values_across_formats() {
        let q = |s| parse_quantity(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
        assert!(q("-2") < q("-1"));
        assert!(q("1500m") > q("1.4"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("1e100") > q("8Ei"));
    }

    #[test]
    fn survives_absurd_exponents() {
        for s in ["1e2147483647", "1e-2147483648", "9e99999999999", "1e9223372036854775807"] {
            if let Ok(q) = parse_quantity(s) {
                let _ = (q.value(), q.milli_value(), q.to_canonical());
            }
        }
    }

    #[test]
    fn finds_the_first_bad_quantity_with_its_path() {
        let pv: core::PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"capacity": {"storage": "1 Gi"}}
        }))
        .expect("pv");
        assert_eq!(pv.check_quantities(), Err(("spec.capacity[storage]".to_string(), QuantityError::FormatWrong)));
        let pod: core::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "1x"}}}],
                     "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}]}
        }))
        .expect("pod");
        assert_eq!(
            pod.check_quantities().map_err(|e| e.0),
            Err("spec.containers[0].resources.limits[memory]".to_string())
        );
        let ok: core::PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "spec": {"resources": {"requests": {"storage": "8Gi"}}}
        }))
        .expect("pvc");
        assert_eq!(ok.check_quantities(), Ok(()));
    }
}
