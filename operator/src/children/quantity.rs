//! Arithmetic on Kubernetes quantities, enough to size a ResourceQuota from the spec.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity's value in base units (bytes, cores), or None when it is not a valid quantity.
pub fn parse(quantity: &str) -> Option<f64> {
    let text = quantity.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        _ => return None,
    };
    Some(value * multiplier)
}

/// Bytes as a binary quantity, rounded up to whole MiB.
pub fn bytes(value: f64) -> Quantity {
    let mebibytes = (value / 1024.0_f64.powi(2)).ceil().max(0.0);
    Quantity(format!("{mebibytes}Mi"))
}

/// Cores as millicores, rounded up.
pub fn cores(value: f64) -> Quantity {
    let millicores = (value * 1000.0).ceil().max(0.0);
    Quantity(format!("{millicores}m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_and_milli_suffixes() {
        assert_eq!(parse("10Gi"), Some(10.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("1.5G"), Some(1.5e9));
        assert_eq!(parse("12Qi"), None);
        assert_eq!(parse("lots"), None);
    }

    #[test]
    fn formats_round_up() {
        assert_eq!(bytes(1.5 * 1024.0 * 1024.0).0, "2Mi");
        assert_eq!(cores(0.2505).0, "251m");
    }
}
