//! One watch per kind of child, shared: each watch fills a cache that reconciles read instead of
//! listing, and hands its stream of changes to the controller (see [`Subscriptions`]), so drift
//! in a child brings its DfrCountry back to the reconciler. An unchanged tenant costs the API
//! server no request at all; only writes and the rare check for a foreign object go to it.
//!
//! The kinds come from [`crate::children::kinds`], plus the three with explicit steps:
//! namespaces, Secrets, pods and the DfrBackups people create.

use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use dfr_crds::DfrBackup;
use futures::SinkExt;
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::children::kinds::for_each_child_kind;
use crate::labels;

/// How many changes a watch holds for the controller before it waits. The controller drains its
/// triggers even while every reconcile slot is busy, so a small buffer only smooths bursts.
const SUBSCRIBER_BUFFER: usize = 256;

/// The changes of one watch, for the controller: every object applied or deleted, once the
/// cache holds the change.
///
/// Not kube-runtime's `ReflectHandle`: in kube-runtime 5.0.0 its stream answers `Pending`
/// without a waker when an object is gone from the store by the time the change is read (a pod
/// deleted right after an update), so the controller never polls it again, the watch then
/// waits on the full buffer forever and the cache goes stale. Seen on the node cluster after
/// tenants were deleted: backup pods that finished never reached the status.
pub type Changes<K> = mpsc::Receiver<Arc<K>>;

/// The kinds with a cache, and where it is.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    fn store(caches: &Caches) -> &Store<Self>;
}

macro_rules! define_caches {
    ($($field:ident: $kind:ty => $stage:ident, $build:path;)*) => {
        /// Read-only views of every watch.
        #[derive(Clone)]
        pub struct Caches {
            /// True once every watch has finished its first list.
            filled: watch::Receiver<bool>,
            pub namespaces: Store<Namespace>,
            pub secrets: Store<Secret>,
            pub pods: Store<Pod>,
            /// Backups people asked for; they carry no label of ours.
            pub backups: Store<DfrBackup>,
            /// Patroni's own state in the tenant namespaces (its `-config`, `-leader` and
            /// `-sync` ConfigMaps, by its scope label): never applied, only read.
            pub patroni: Store<ConfigMap>,
            $(pub $field: Store<$kind>,)*
        }

        /// The change streams of the same watches, for the controller. Each is consumed once.
        pub struct Subscriptions {
            pub namespaces: Changes<Namespace>,
            pub secrets: Changes<Secret>,
            pub pods: Changes<Pod>,
            pub backups: Changes<DfrBackup>,
            pub patroni: Changes<ConfigMap>,
            $(pub $field: Changes<$kind>,)*
        }

        $(impl Cached for $kind {
            fn store(caches: &Caches) -> &Store<Self> {
                &caches.$field
            }
        })*

        impl Caches {
            /// Starts one watch per kind; the returned tasks end when aborted.
            pub fn start(client: &Client) -> (Caches, Subscriptions, Vec<JoinHandle<()>>) {
                let mut tasks = Vec::new();
                let namespaces = spawn::<Namespace>(client, &mut tasks);
                let secrets = spawn::<Secret>(client, &mut tasks);
                let pods = spawn::<Pod>(client, &mut tasks);
                let backups = spawn_with::<DfrBackup>(client, watcher::Config::default(), &mut tasks);
                let patroni = spawn_with::<ConfigMap>(
                    client,
                    watcher::Config::default().labels(labels::PATRONI_SCOPE),
                    &mut tasks,
                );
                $(let $field = spawn::<$kind>(client, &mut tasks);)*
                let (filled_tx, filled) = watch::channel(false);
                let caches = Caches {
                    filled,
                    namespaces: namespaces.0,
                    secrets: secrets.0,
                    pods: pods.0,
                    backups: backups.0,
                    patroni: patroni.0,
                    $($field: $field.0,)*
                };
                let subscriptions = Subscriptions {
                    namespaces: namespaces.1,
                    secrets: secrets.1,
                    pods: pods.1,
                    backups: backups.1,
                    patroni: patroni.1,
                    $($field: $field.1,)*
                };
                // One task waits for the stores: Store::wait_until_ready wakes only the last of
                // several concurrent waiters, so reconciles wait on this channel instead.
                let stores = caches.clone();
                tasks.push(tokio::spawn(async move {
                    let _ = stores.namespaces.wait_until_ready().await;
                    let _ = stores.secrets.wait_until_ready().await;
                    let _ = stores.pods.wait_until_ready().await;
                    let _ = stores.backups.wait_until_ready().await;
                    let _ = stores.patroni.wait_until_ready().await;
                    $(let _ = stores.$field.wait_until_ready().await;)*
                    let _ = filled_tx.send(true);
                }));
                (caches, subscriptions, tasks)
            }
        }
    };
}
for_each_child_kind!(define_caches);

impl Cached for Namespace {
    fn store(caches: &Caches) -> &Store<Self> {
        &caches.namespaces
    }
}

impl Cached for Secret {
    fn store(caches: &Caches) -> &Store<Self> {
        &caches.secrets
    }
}

impl Cached for DfrBackup {
    fn store(caches: &Caches) -> &Store<Self> {
        &caches.backups
    }
}

impl Cached for Pod {
    fn store(caches: &Caches) -> &Store<Self> {
        &caches.pods
    }
}

/// One watch of the operator's objects of kind K: a cache plus a stream for the controller.
fn spawn<K>(client: &Client, tasks: &mut Vec<JoinHandle<()>>) -> (Store<K>, Changes<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K: Resource<DynamicType: Eq + Hash + Clone + Default>,
{
    let config = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::OPERATOR_NAME
    ));
    spawn_with(client, config, tasks)
}

fn spawn_with<K>(
    client: &Client,
    config: watcher::Config,
    tasks: &mut Vec<JoinHandle<()>>,
) -> (Store<K>, Changes<K>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K: Resource<DynamicType: Eq + Hash + Clone + Default>,
{
    let (reader, writer) = reflector::store();
    let (sender, changes) = mpsc::channel(SUBSCRIBER_BUFFER);
    // managedFields are most of an object's size and no reconcile reads them.
    let objects = watcher(Api::<K>::all(client.clone()), config)
        .modify(|object| object.managed_fields_mut().clear())
        .default_backoff();
    let stream = reflector::reflector(writer, objects);
    tasks.push(tokio::spawn(async move {
        stream
            .for_each(|event| {
                let mut sender = sender.clone();
                async move {
                    let changed = match event {
                        Ok(
                            watcher::Event::Apply(object)
                            | watcher::Event::Delete(object)
                            | watcher::Event::InitApply(object),
                        ) => object,
                        Ok(_) => return,
                        Err(error) => {
                            warn!(kind = %K::kind(&()), error = %error, "watch of a child kind failed; retrying");
                            return;
                        }
                    };
                    // Waits while the controller's buffer is full; fails only once the
                    // controller is gone, when nobody needs the change.
                    let _ = sender.send(Arc::new(changed)).await;
                }
            })
            .await;
    }));
    (reader, changes)
}

impl Caches {
    /// Waits for every cache's first full list, so no reconcile mistakes an unlisted object for
    /// a missing one. Immediate once they are filled; any number of callers may wait at once.
    pub async fn wait_until_ready(&self, timeout: Duration) -> bool {
        let mut filled = self.filled.clone();
        matches!(
            tokio::time::timeout(timeout, filled.wait_for(|filled| *filled)).await,
            Ok(Ok(_))
        )
    }

    /// The cached objects of kind K in `namespace` carrying every label of `selector`.
    pub fn in_namespace<K: Cached>(&self, namespace: &str, selector: &[(&str, &str)]) -> Vec<K> {
        K::store(self)
            .state()
            .into_iter()
            .filter(|object| object.namespace().as_deref() == Some(namespace))
            .filter(|object| {
                let labels = object.labels();
                selector
                    .iter()
                    .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|object| (*object).clone())
            .collect()
    }

    /// One of Patroni's ConfigMaps (`postgres-config`, `postgres-sync`, ...) in `namespace`.
    pub fn patroni_state(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.patroni
            .get(&reflector::ObjectRef::<ConfigMap>::new(name).within(namespace))
            .map(|object| (*object).clone())
    }

    pub fn get<K: Cached>(&self, namespace: Option<&str>, name: &str) -> Option<K> {
        let mut reference = reflector::ObjectRef::<K>::new(name);
        if let Some(namespace) = namespace {
            reference = reference.within(namespace);
        }
        K::store(self)
            .get(&reference)
            .map(|object| (*object).clone())
    }
}
