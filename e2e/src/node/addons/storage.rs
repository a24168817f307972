//! The default StorageClass with pre-made local (hostPath) volumes: there is no cloud to
//! provision disks.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{apply, meta};
use crate::host::{Error, Result};
use crate::node::config::NodeLayout;

pub const STORAGE_CLASS: &str = "dfr-local";
pub const VOLUME_COUNT: usize = 24;
/// hostPath volumes cannot enforce a size; this is what each one claims to hold.
pub const VOLUME_CAPACITY: &str = "100Gi";

/// The default StorageClass: pre-made local volumes, bound when a pod is scheduled, kept when
/// their claim goes (the operator's Retain policy depends on data outliving the claim's owner).
pub fn storage_class() -> StorageClass {
    let mut metadata = meta(STORAGE_CLASS, None, "local-volumes");
    metadata.annotations = Some(BTreeMap::from([(
        "storageclass.kubernetes.io/is-default-class".to_string(),
        "true".to_string(),
    )]));
    StorageClass {
        metadata,
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        reclaim_policy: Some("Retain".into()),
        ..StorageClass::default()
    }
}

pub fn volume_name(index: usize) -> String {
    format!("dfr-local-{index:02}")
}

pub fn persistent_volume(layout: &NodeLayout, index: usize) -> PersistentVolume {
    let name = volume_name(index);
    PersistentVolume {
        metadata: meta(&name, None, "local-volumes"),
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(VOLUME_CAPACITY.into()),
            )])),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            storage_class_name: Some(STORAGE_CLASS.into()),
            host_path: Some(HostPathVolumeSource {
                path: layout.volumes_dir().join(&name).display().to_string(),
                type_: Some("Directory".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![layout.node_name.clone()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    }
}

/// The StorageClass, then each volume's directory (open to any pod's user) and its PV.
pub async fn install(client: &kube::Client, layout: &NodeLayout) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    apply(kube::Api::all(client.clone()), &storage_class()).await?;
    for index in 0..VOLUME_COUNT {
        let dir = layout.volumes_dir().join(volume_name(index));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        // Any pod's user may own the data it writes; hostPath volumes get no fsGroup.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(Error::io(format!("opening up {}", dir.display())))?;
        apply(
            kube::Api::all(client.clone()),
            &persistent_volume(layout, index),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_local_retained_and_pinned_to_the_node() {
        let layout = NodeLayout {
            node_name: "dfr-n".into(),
            state_dir: "/s".into(),
            run_dir: "/r".into(),
            kubelet_port: 1,
            kubelet_healthz_port: 2,
            proxy_healthz_port: 3,
            proxy_metrics_port: 4,
        };
        let pv = persistent_volume(&layout, 3);
        let spec = pv.spec.unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("dfr-local-03"));
        assert_eq!(spec.host_path.unwrap().path, "/s/volumes/dfr-local-03");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        let terms = spec
            .node_affinity
            .unwrap()
            .required
            .unwrap()
            .node_selector_terms;
        assert_eq!(
            terms[0].match_expressions.as_ref().unwrap()[0].values,
            Some(vec!["dfr-n".to_string()])
        );
        let class = storage_class();
        assert_eq!(
            class.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
    }
}
