//! Whether the cluster serves a group's kinds that the operator may use but does not require
//! (the Prometheus Operator's, cert-manager's). Asked of the API server's discovery at most every
//! few minutes for all tenants together, so installing them later is noticed without a restart.
//! A watch on a kind the cluster lacks fails, which is why these kinds have no watch cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;

use crate::error::{Error, Result};

/// How long an answer of discovery is reused.
const RECHECK: Duration = Duration::from_secs(300);

/// The cached answer to "does the cluster serve every one of these kinds of this group?".
pub struct Discovery {
    group_version: &'static str,
    plurals: &'static [&'static str],
    answer: Mutex<Option<(Instant, bool)>>,
}

impl Discovery {
    pub const fn new(group_version: &'static str, plurals: &'static [&'static str]) -> Self {
        Self {
            group_version,
            plurals,
            answer: Mutex::new(None),
        }
    }

    pub fn group_version(&self) -> &'static str {
        self.group_version
    }

    pub async fn installed(&self, client: &Client) -> Result<bool> {
        if let Ok(answer) = self.answer.lock()
            && let Some((at, installed)) = *answer
            && at.elapsed() < RECHECK
        {
            return Ok(installed);
        }
        let installed = match client.list_api_group_resources(self.group_version).await {
            Ok(list) => served(&list, self.plurals),
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(error) => {
                return Err(Error::kube(format!("discovering {}", self.group_version))(
                    error,
                ));
            }
        };
        if let Ok(mut answer) = self.answer.lock() {
            *answer = Some((Instant::now(), installed));
        }
        Ok(installed)
    }
}

/// Every kind the operator uses is served.
fn served(list: &APIResourceList, plurals: &[&str]) -> bool {
    plurals
        .iter()
        .all(|plural| list.resources.iter().any(|r| r.name == *plural))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn list(plurals: &[&str]) -> APIResourceList {
        APIResourceList {
            group_version: "monitoring.coreos.com/v1".into(),
            resources: plurals
                .iter()
                .map(|name| APIResource {
                    name: name.to_string(),
                    ..APIResource::default()
                })
                .collect(),
        }
    }

    #[test]
    fn every_kind_must_be_served() {
        let wanted = ["podmonitors", "prometheusrules"];
        assert!(served(
            &list(&["podmonitors", "prometheusrules", "servicemonitors"]),
            &wanted
        ));
        assert!(!served(
            &list(&["servicemonitors", "prometheusrules"]),
            &wanted
        ));
        assert!(!served(&list(&[]), &wanted));
    }
}
