//! Turns a DfrCountry into the checked [`Tenant`] view. The API server already enforced the
//! schema and CEL rules (quantities included); these checks repeat what a CRD older than this
//! operator may not have enforced and catch what CEL cannot express, so a bad value is one
//! `InvalidSpec` error naming the field instead of a failure later inside the cluster.

use std::collections::BTreeSet;

use dfr_crds::DfrCountry;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Resource, ResourceExt};

use crate::children::quantity;
use crate::duration::parse_go_duration;
use crate::error::{Error, Result};
use crate::naming;
use crate::tenant::{Tenant, TlsLifetimes};

pub fn validate(country: &DfrCountry) -> Result<Tenant> {
    let spec = &country.spec;
    if country.metadata.uid.is_none() {
        return Err(Error::MissingMetadata("uid"));
    }
    let owner = country
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("name"))?;
    check_egress_names(country)?;
    check_quantity("postgres.storage.size", &spec.postgres.storage.size)?;
    check_resources("postgres.resources", spec.postgres.resources.as_ref())?;
    check_resources("api.resources", spec.api.resources.as_ref())?;
    if let Some(volume) = spec
        .backup
        .as_ref()
        .and_then(|backup| backup.destination.volume.as_ref())
    {
        check_quantity("backup.destination.volume.size", &volume.size)?;
    }
    check_backup(country)?;
    let tls = TlsLifetimes {
        duration: duration("tls.duration", &spec.tls.duration)?,
        renew_before: duration("tls.renewBefore", &spec.tls.renew_before)?,
    };
    let pii_key_rotation = duration("piiKeys.rotationPeriod", &spec.pii_keys.rotation_period)?;
    // The schema refuses these at apply time; a DfrCountry stored under an older schema may
    // still ask for one.
    if !dfr_crds::SUPPORTED_POSTGRES_VERSIONS.contains(&spec.postgres.version) {
        return Err(Error::InvalidSpec(format!(
            "postgres.version {} has no PostgreSQL image in this operator: it runs {:?}",
            spec.postgres.version,
            dfr_crds::SUPPORTED_POSTGRES_VERSIONS
        )));
    }
    if tls.renew_before >= tls.duration {
        return Err(Error::InvalidSpec(format!(
            "tls.renewBefore {:?} must be shorter than tls.duration {:?}",
            spec.tls.renew_before, spec.tls.duration
        )));
    }
    Ok(Tenant {
        name: country.name_any(),
        namespace: naming::namespace(country),
        owner,
        generation: country.metadata.generation,
        spec: spec.clone(),
        tls,
        pii_key_rotation,
    })
}

fn check_backup(country: &DfrCountry) -> Result<()> {
    let spec = &country.spec;
    if let Some(s3) = spec
        .backup
        .as_ref()
        .and_then(|backup| backup.destination.s3.as_ref())
    {
        crate::children::backup::pgbackrest::s3_endpoint(&s3.endpoint).map_err(|problem| {
            Error::InvalidSpec(format!("backup.destination.s3.endpoint {problem}"))
        })?;
    }
    let Some(bootstrap) = &spec.bootstrap else {
        return Ok(());
    };
    let from = &bootstrap.from_backup;
    if !crate::children::backup::has_s3_repository_spec(spec) {
        return Err(Error::InvalidSpec(format!(
            "bootstrap.fromBackup needs backup.destination.s3: the repository holding the backups of {} (and this tenant's own backups)",
            from.country
        )));
    }
    if from.country == country.name_any() {
        return Err(Error::InvalidSpec(
            "bootstrap.fromBackup.country names this DfrCountry itself: name the tenant whose backups to restore".into(),
        ));
    }
    if let Some(time) = &from.target_time {
        chrono::DateTime::parse_from_rfc3339(time).map_err(|error| {
            Error::InvalidSpec(format!(
                "bootstrap.fromBackup.targetTime {time:?} is not an RFC 3339 time such as 2026-12-01T10:15:00Z: {error}"
            ))
        })?;
    }
    Ok(())
}

fn check_egress_names(country: &DfrCountry) -> Result<()> {
    let mut names = BTreeSet::new();
    for rule in &country.spec.network.egress {
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
    Ok(())
}

fn duration(field: &str, text: &str) -> Result<std::time::Duration> {
    parse_go_duration(text).ok_or_else(|| {
        Error::InvalidSpec(format!(
            "{field} {text:?} is not a duration such as 720h or 1h30m"
        ))
    })
}

fn check_quantity(field: &str, value: &Quantity) -> Result<()> {
    match quantity::parse(&value.0) {
        Some(amount) if amount >= 0.0 => Ok(()),
        _ => Err(Error::InvalidSpec(format!(
            "{field} {:?} is not a Kubernetes quantity such as 10Gi, 512Mi or 500m",
            value.0
        ))),
    }
}

fn check_resources(field: &str, resources: Option<&ResourceRequirements>) -> Result<()> {
    let Some(resources) = resources else {
        return Ok(());
    };
    for (part, values) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (name, value) in values.iter().flatten() {
            check_quantity(&format!("{field}.{part}.{name}"), value)?;
        }
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

    fn country(extra: &str) -> DfrCountry {
        let spec = serde_yaml::from_str(&format!(
            "countryCode: TON\ndisplayName: Tonga\nenvironment: dev\nappVersion: '1.0'\n{extra}"
        ))
        .unwrap();
        let mut c = DfrCountry::new("ton-dev", spec);
        c.metadata.uid = Some("u".into());
        c
    }

    fn egress(rules: &str) -> DfrCountry {
        country(&format!("network:\n  egress: {rules}\n"))
    }

    #[test]
    fn duplicate_egress_names_are_rejected_by_name() {
        let twice = "[{name: sms, cidr: 203.0.113.0/24, ports: [{port: 443}]}, {name: sms, cidr: 198.51.100.0/24, ports: [{port: 443}]}]";
        let error = validate(&egress(twice)).unwrap_err().to_string();
        assert!(error.contains("two entries named sms"), "{error}");
    }

    #[test]
    fn egress_names_must_be_dns_labels() {
        let upper = "[{name: SMS_Gateway, cidr: 203.0.113.0/24, ports: [{port: 443}]}]";
        assert!(validate(&egress(upper)).is_err());
        let fine = "[{name: sms-gateway, cidr: 203.0.113.0/24, ports: [{port: 443}]}]";
        assert!(validate(&egress(fine)).is_ok());
    }

    #[test]
    fn the_view_carries_identity_and_parsed_durations() {
        let tenant = validate(&country("tls: {duration: 48h, renewBefore: 90m}\n")).unwrap();
        assert_eq!(tenant.name, "ton-dev");
        assert_eq!(tenant.namespace, "dfr-ton-dev");
        assert_eq!(tenant.owner.uid, "u");
        assert_eq!(tenant.owner.controller, Some(true));
        assert_eq!(tenant.tls.duration.as_secs(), 48 * 3600);
        assert_eq!(tenant.tls.renew_before.as_secs(), 90 * 60);
        assert_eq!(tenant.pii_key_rotation.as_secs(), 1440 * 3600);
        let tenant = validate(&country("piiKeys: {rotationPeriod: 2m}\n")).unwrap();
        assert_eq!(tenant.pii_key_rotation.as_secs(), 120);
    }

    #[test]
    fn a_version_without_an_image_is_refused_naming_what_the_operator_runs() {
        let error = validate(&country("postgres: {version: 16}\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("postgres.version 16"), "{error}");
        assert!(error.contains("[15]"), "{error}");
        assert!(validate(&country("postgres: {version: 15}\n")).is_ok());
    }

    #[test]
    fn a_bad_duration_is_one_error_naming_the_field() {
        let error = validate(&country("tls: {renewBefore: soon}\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("tls.renewBefore \"soon\""), "{error}");
        let error = validate(&country("piiKeys: {rotationPeriod: monthly}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("piiKeys.rotationPeriod \"monthly\""),
            "{error}"
        );
        let error = validate(&country("tls: {duration: 1h, renewBefore: 2h}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("must be shorter than tls.duration"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_quantity_names_its_field() {
        let error = validate(&country("postgres: {storage: {size: lots}}\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("postgres.storage.size \"lots\""), "{error}");
        let error = validate(&country("api: {resources: {limits: {memory: big}}}\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("api.resources.limits.memory"), "{error}");
        assert!(validate(&country("postgres: {storage: {size: 20Gi}}\n")).is_ok());
    }

    #[test]
    fn an_object_not_read_from_the_api_server_is_refused() {
        let mut c = country("");
        c.metadata.uid = None;
        assert!(matches!(validate(&c), Err(Error::MissingMetadata("uid"))));
    }
}
