//! Checks the CRD schema cannot express. The API server already enforced the schema and CEL
//! rules; these catch what would otherwise fail later inside the cluster, with a clear message.

use std::collections::BTreeSet;

use dfr_crds::DfrCountry;

use crate::error::{Error, Result};

pub fn validate(country: &DfrCountry) -> Result<()> {
    let spec = &country.spec;
    let mut names = BTreeSet::new();
    for rule in &spec.network.egress {
        if !names.insert(rule.name.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "network.egress has two entries named {}: each destination needs its own name",
                rule.name
            )));
        }
        if !is_dns_label(&rule.name) {
            return Err(Error::InvalidSpec(format!(
                "network.egress name {:?} must be a DNS label (lower-case letters, digits and '-'), since it names a NetworkPolicy",
                rule.name
            )));
        }
    }
    if country.metadata.uid.is_none() {
        return Err(Error::MissingMetadata("uid"));
    }
    Ok(())
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn country(egress: &str) -> DfrCountry {
        let spec = serde_yaml::from_str(&format!(
            "countryCode: TON\ndisplayName: Tonga\nenvironment: dev\nappVersion: '1.0'\nnetwork:\n  egress: {egress}\n"
        ))
        .unwrap();
        let mut c = DfrCountry::new("ton-dev", spec);
        c.metadata.uid = Some("u".into());
        c
    }

    #[test]
    fn duplicate_egress_names_are_rejected_by_name() {
        let twice = "[{name: sms, cidr: 203.0.113.0/24, ports: [{port: 443}]}, {name: sms, cidr: 198.51.100.0/24, ports: [{port: 443}]}]";
        let error = validate(&country(twice)).unwrap_err().to_string();
        assert!(error.contains("two entries named sms"), "{error}");
    }

    #[test]
    fn egress_names_must_be_dns_labels() {
        let upper = "[{name: SMS_Gateway, cidr: 203.0.113.0/24, ports: [{port: 443}]}]";
        assert!(validate(&country(upper)).is_err());
        let fine = "[{name: sms-gateway, cidr: 203.0.113.0/24, ports: [{port: 443}]}]";
        assert!(validate(&country(fine)).is_ok());
    }
}
