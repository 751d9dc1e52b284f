//! Durations, cpu and byte quantities as people write them, and as Cube prints them back.
//!
//! One parser of each, shared by cubectl's flags, task files and the servers' flags, so `1m30s`,
//! `500m` or `64Mi` mean the same wherever they are typed:
//!
//! - durations: a number and a unit (`ms`, `s`, `m`, `h`, `d`), repeated: `500ms`, `5s`, `1m30s`,
//!   `1.5s`. A bare number is refused (is `5` five seconds or five minutes?), except `0`, which is
//!   zero in every unit (as Go's `time.ParseDuration` takes it).
//! - cpu: cores (`2`, `0.5`) or whole millicores (`500m`), as kubectl writes them; the value is
//!   in millicores (1000 = one core), the unit of `cpu_millis` on the wire.
//! - bytes: a number and an optional unit, binary (`Ki`, `Mi`, `Gi`, `Ti`) or decimal (`k`, `M`,
//!   `G`, `T`), with or without a trailing `B`: `64Mi`, `64MiB`, `512M`, `1G`, `1024`.
//!
//! Numbers are read exactly (no floating point): `0.1s` is 100 ms, not 99.999...

use std::{fmt, time::Duration};

/// What a text was meant to be, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// A duration: `10s`.
    Duration,
    /// A cpu quantity: `500m`.
    Cpu,
    /// A byte quantity: `64Mi`.
    Bytes,
}

impl Quantity {
    fn noun(self) -> &'static str {
        match self {
            Quantity::Duration => "a duration",
            Quantity::Cpu => "a cpu quantity",
            Quantity::Bytes => "a byte quantity",
        }
    }

    fn unit_noun(self) -> &'static str {
        match self {
            Quantity::Duration => "a unit of time",
            Quantity::Cpu => "a cpu unit",
            Quantity::Bytes => "a size unit",
        }
    }

    fn examples(self) -> &'static str {
        match self {
            Quantity::Duration => "500ms, 10s, 2m or 1m30s",
            Quantity::Cpu => "2, 0.5 or 500m",
            Quantity::Bytes => "64Mi, 1Gi, 512M or 1024",
        }
    }

    fn units(self) -> &'static str {
        match self {
            Quantity::Duration => "ms, s, m, h or d",
            Quantity::Cpu => "m for millicores, or none for cores",
            Quantity::Bytes => "Ki, Mi, Gi, Ti, k, M, G or T, with or without B",
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// Why a text is not the quantity it was meant to be. The message quotes the text and says
/// what was expected, so it reads well after clap's `invalid value '5' for '--timeout'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a number (and unit) at all: empty, negative, `ten`, `1.2.3s`.
    #[error("{text:?} is not {quantity} (e.g. {})", .quantity.examples())]
    Malformed {
        /// What it was meant to be.
        quantity: Quantity,
        /// The text as given.
        text: String,
    },
    /// A duration's number without its unit: `5`, `1m30`.
    #[error("{text:?} needs a unit, e.g. {text}s ({})", Quantity::Duration.units())]
    NoUnit {
        /// The text as given.
        text: String,
    },
    /// A unit that is not one of the quantity's.
    #[error("{text:?}: {unit:?} is not {} (use {})", .quantity.unit_noun(), .quantity.units())]
    UnknownUnit {
        /// What it was meant to be.
        quantity: Quantity,
        /// The text as given.
        text: String,
        /// The unit as given.
        unit: String,
    },
    /// A fraction of a millicore: `0.5m`.
    #[error("{text:?} is finer than a millicore (e.g. {})", Quantity::Cpu.examples())]
    TooFine {
        /// The text as given.
        text: String,
    },
    /// More than Cube can count.
    #[error("{text:?} is too large for {quantity}")]
    TooLarge {
        /// What it was meant to be.
        quantity: Quantity,
        /// The text as given.
        text: String,
    },
}

/// Units of time, in nanoseconds.
const TIME_UNITS: [(&str, u128); 5] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// Units of bytes. Binary units (`Mi`) are what memory limits are usually written in; decimal
/// ones (`M`) are what disks are sold in.
const BYTE_UNITS: [(&str, u128); 20] = [
    ("", 1),
    ("B", 1),
    ("k", 1_000),
    ("K", 1_000),
    ("kB", 1_000),
    ("KB", 1_000),
    ("M", 1_000_000),
    ("MB", 1_000_000),
    ("G", 1_000_000_000),
    ("GB", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("TB", 1_000_000_000_000),
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// At most this many digits after the point: 24 keeps `fraction * unit` inside a u128 for the
/// largest unit (a day in nanoseconds), and no one writes more.
const MAX_FRACTION_DIGITS: usize = 24;

/// A decimal number without sign, read exactly: `12`, `0.5`, `.5`, `5.`.
#[derive(Debug, Clone, Copy)]
struct Decimal {
    whole: u128,
    fraction: u128,
    /// 10 to the number of digits of `fraction`.
    scale: u128,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty()
            || !digits(whole)
            || !digits(fraction)
            || fraction.len() > MAX_FRACTION_DIGITS
        {
            return None;
        }
        Some(Decimal {
            whole: if whole.is_empty() {
                0
            } else {
                whole.parse().ok()?
            },
            fraction: if fraction.is_empty() {
                0
            } else {
                fraction.parse().ok()?
            },
            scale: 10u128.pow(fraction.len() as u32),
        })
    }

    /// The number times `factor`, rounded to the nearest whole (halves up); `None` on overflow.
    fn times(self, factor: u128) -> Option<u128> {
        let whole = self.whole.checked_mul(factor)?;
        let part = self.fraction.checked_mul(factor)?;
        whole.checked_add((part + self.scale / 2) / self.scale)
    }

    fn is_whole(self) -> bool {
        self.fraction == 0
    }
}

/// Where a number ends and its unit begins.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// Parses a duration: `500ms`, `5s`, `2m`, `1h`, `1d`, `1m30s`, `1.5s`, or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let text = text.trim();
    let malformed = || ParseError::Malformed {
        quantity: Quantity::Duration,
        text: text.to_string(),
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(malformed());
    }
    while !rest.is_empty() {
        let (number, tail) = split_number(rest);
        let number = Decimal::parse(number).ok_or_else(malformed)?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        if unit.is_empty() {
            return Err(ParseError::NoUnit {
                text: text.to_string(),
            });
        }
        let factor = TIME_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, factor)| *factor)
            .ok_or_else(|| ParseError::UnknownUnit {
                quantity: Quantity::Duration,
                text: text.to_string(),
                unit: unit.to_string(),
            })?;
        let too_large = || ParseError::TooLarge {
            quantity: Quantity::Duration,
            text: text.to_string(),
        };
        nanos = number
            .times(factor)
            .and_then(|n| nanos.checked_add(n))
            .ok_or_else(too_large)?;
        rest = tail;
    }
    let seconds = u64::try_from(nanos / 1_000_000_000).map_err(|_| ParseError::TooLarge {
        quantity: Quantity::Duration,
        text: text.to_string(),
    })?;
    Ok(Duration::new(seconds, (nanos % 1_000_000_000) as u32))
}

/// Parses a cpu quantity into millicores: `2` and `0.5` are cores, `500m` millicores.
pub fn parse_cpu(text: &str) -> Result<i64, ParseError> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    let number = Decimal::parse(number).ok_or_else(|| ParseError::Malformed {
        quantity: Quantity::Cpu,
        text: text.to_string(),
    })?;
    let millis = match unit {
        "" => number.times(1000),
        "m" if number.is_whole() => Some(number.whole),
        "m" => {
            return Err(ParseError::TooFine {
                text: text.to_string(),
            })
        }
        _ => {
            return Err(ParseError::UnknownUnit {
                quantity: Quantity::Cpu,
                text: text.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    millis
        .and_then(|m| i64::try_from(m).ok())
        .ok_or_else(|| ParseError::TooLarge {
            quantity: Quantity::Cpu,
            text: text.to_string(),
        })
}

/// Parses a byte quantity: `64Mi`, `64MiB`, `1Gi`, `512M`, `1G`, `1024`, `1.5Gi`.
pub fn parse_bytes(text: &str) -> Result<i64, ParseError> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    let number = Decimal::parse(number).ok_or_else(|| ParseError::Malformed {
        quantity: Quantity::Bytes,
        text: text.to_string(),
    })?;
    let factor = BYTE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, factor)| *factor)
        .ok_or_else(|| ParseError::UnknownUnit {
            quantity: Quantity::Bytes,
            text: text.to_string(),
            unit: unit.to_string(),
        })?;
    number
        .times(factor)
        .and_then(|b| i64::try_from(b).ok())
        .ok_or_else(|| ParseError::TooLarge {
            quantity: Quantity::Bytes,
            text: text.to_string(),
        })
}

/// A duration as people read it, in the syntax [`parse_duration`] takes: `10s`, `500ms`,
/// `1.5s`, `1m30s`, `1h`, `0s`. Under a minute, fractions of a second are kept (to the
/// millisecond); from a minute up, whole seconds.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 && seconds < 60 {
        let millis = duration.as_millis();
        return if millis % 1000 == 0 {
            format!("{seconds}s")
        } else if seconds == 0 {
            format!("{millis}ms")
        } else {
            let text = format!("{:.3}", duration.as_secs_f64());
            format!("{}s", text.trim_end_matches('0'))
        };
    }
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Millicores as people read them: `500m`, `2`.
pub fn format_cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Bytes in binary units: `256Mi`, `1.5Gi`, `512`.
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}")
    } else if value.fract() == 0.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: fmt::Debug>(result: Result<T, ParseError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn durations_take_a_number_and_a_unit() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("5s"), Ok(ms(5000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(ms(3_723_004)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("0.1s"), Ok(ms(100)), "read exactly");
        assert_eq!(
            parse_duration("0.000000001s"),
            Ok(Duration::from_nanos(1)),
            "proto3 JSON durations carry nanoseconds"
        );
        assert_eq!(parse_duration(" 10s "), Ok(ms(10_000)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("0"),
            Ok(Duration::ZERO),
            "zero needs no unit"
        );
    }

    #[test]
    fn durations_without_a_unit_say_so() {
        assert_eq!(
            message(parse_duration("5")),
            "\"5\" needs a unit, e.g. 5s (ms, s, m, h or d)"
        );
        assert!(message(parse_duration("1m30")).contains("needs a unit, e.g. 1m30s"));
        assert!(message(parse_duration("0.5")).contains("needs a unit"));
    }

    #[test]
    fn bad_durations_say_what_was_expected() {
        assert_eq!(
            message(parse_duration("10x")),
            "\"10x\": \"x\" is not a unit of time (use ms, s, m, h or d)"
        );
        for bad in ["", "s", "ten", "-1s", "1.2.3s", "1s-", "ms5"] {
            let error = message(parse_duration(bad));
            assert!(
                error.contains("is not a duration") || error.contains("is not a unit of time"),
                "{bad:?}: {error}"
            );
            assert!(!error.contains("invalid digit"), "{bad:?}: {error}");
        }
        assert!(message(parse_duration("99999999999999999999d")).contains("too large"));
    }

    #[test]
    fn cpu_is_cores_or_millicores() {
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("1.25"), Ok(1250));
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("0"), Ok(0));
        assert_eq!(
            message(parse_cpu("lots")),
            "\"lots\" is not a cpu quantity (e.g. 2, 0.5 or 500m)"
        );
        assert!(message(parse_cpu("-1")).contains("is not a cpu quantity"));
        assert_eq!(
            message(parse_cpu("2c")),
            "\"2c\": \"c\" is not a cpu unit (use m for millicores, or none for cores)"
        );
        assert!(message(parse_cpu("0.5m")).contains("finer than a millicore"));
        assert!(message(parse_cpu("99999999999999999999")).contains("too large"));
    }

    #[test]
    fn bytes_take_binary_and_decimal_units() {
        assert_eq!(parse_bytes("64Mi"), Ok(64 << 20));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("512M"), Ok(512_000_000));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("2k"), Ok(2000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("1024B"), Ok(1024));
        assert_eq!(
            message(parse_bytes("1Zi")),
            "\"1Zi\": \"Zi\" is not a size unit \
             (use Ki, Mi, Gi, Ti, k, M, G or T, with or without B)"
        );
        assert_eq!(
            message(parse_bytes("big")),
            "\"big\" is not a byte quantity (e.g. 64Mi, 1Gi, 512M or 1024)"
        );
        assert!(message(parse_bytes("-1Mi")).contains("is not a byte quantity"));
        assert!(message(parse_bytes("9999999Ti")).contains("too large"));
    }

    #[test]
    fn formats_read_back() {
        for (text, millis) in [
            ("10s", 10_000),
            ("500ms", 500),
            ("1.5s", 1500),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("0s", 0),
        ] {
            let duration = Duration::from_millis(millis);
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
        assert_eq!(format_cpu(500), "500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(parse_cpu(&format_cpu(1500)), Ok(1500));
        assert_eq!(format_bytes(256 << 20), "256Mi");
        assert_eq!(format_bytes(3 << 29), "1.5Gi");
        assert_eq!(format_bytes(512), "512");
        assert_eq!(parse_bytes(&format_bytes(256 << 20)), Ok(256 << 20));
    }
}
