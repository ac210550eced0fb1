//! What functions exist right now, for the doors that accept work (the gateway, the Kafka
//! bridge): nothing is compiled in, everything is learned.
//!
//! Two sources feed it:
//! - the function catalog ([`crate::catalog`]): every deployed function's descriptor, followed
//!   live, so a function scaled to zero is still known and its async jobs are accepted;
//! - discovery: a `$SRV.PING` sweep every few seconds counts the live replicas of each
//!   function and compares the descriptor digest each replica announces with the one held; on
//!   a difference, or a function seen for the first time, its `$SRV.INFO` is fetched and the
//!   descriptor taken from there (ADR-32 endpoint metadata). A name nobody knows is looked up
//!   on the spot (catalog and `$SRV.INFO.<name>`), at most once a second per name.
//!
//! Every descriptor is checked ([`FunctionSpec::new`]) before it is used: anything on the bus
//! could claim to be a function, and a bad declaration is logged and ignored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use orbit_contract::descriptor::{DESCRIPTOR_METADATA_KEY, DIGEST_METADATA_KEY};
use orbit_contract::subjects::FUNCTIONS_BUCKET;
use orbit_contract::{FieldError, FunctionDescriptor, FunctionSpec};
use serde::Deserialize;

use crate::catalog::{self, Change};
use crate::Shutdown;

/// How long a sweep waits for `$SRV.PING` replies.
const PING_WINDOW: Duration = Duration::from_millis(250);
/// How long an on-the-spot lookup waits for `$SRV.INFO`.
const INFO_TIMEOUT: Duration = Duration::from_millis(500);
/// How often an unknown name may trigger an on-the-spot lookup.
const MISS_INTERVAL: Duration = Duration::from_secs(1);
/// Unknown names remembered at most (a client spraying names cannot grow the map).
const MAX_MISSES: usize = 1024;

/// One known function.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: Arc<FunctionSpec>,
    /// Replicas that answered the last sweep.
    pub replicas: usize,
    /// Whether the catalog holds it (deployed), besides any live replicas.
    pub in_catalog: bool,
    digest: String,
}

impl Entry {
    pub fn descriptor(&self) -> &FunctionDescriptor {
        self.spec.descriptor()
    }
}

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    entries: RwLock<BTreeMap<String, Entry>>,
    misses: Mutex<HashMap<String, Instant>>,
}

/// The live registry of functions. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// A `$SRV.PING` reply (only the fields used).
#[derive(Deserialize)]
struct Ping {
    name: String,
    id: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// A `$SRV.INFO` reply (only the fields used).
#[derive(Deserialize)]
struct Info {
    name: String,
    #[serde(default)]
    endpoints: Vec<EndpointInfo>,
}

#[derive(Deserialize)]
struct EndpointInfo {
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

impl Registry {
    /// Starts following the catalog and sweeping discovery every `interval`, until `shutdown`.
    pub async fn start(
        client: async_nats::Client,
        jetstream: jetstream::Context,
        interval: Duration,
        shutdown: Shutdown,
    ) -> Self {
        let registry = Self {
            inner: Arc::new(Inner {
                client,
                jetstream,
                entries: RwLock::new(BTreeMap::new()),
                misses: Mutex::new(HashMap::new()),
            }),
        };
        // The first sweep runs before anything is served, so a gateway that just started
        // knows the functions that are up.
        registry.sweep().await;
        tokio::spawn(registry.clone().follow_catalog(shutdown.clone()));
        tokio::spawn(registry.clone().sweep_every(interval, shutdown));
        registry
    }

    /// Every known function, by name.
    pub fn list(&self) -> Vec<Entry> {
        self.read().values().cloned().collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The function called `name`, if known now.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.read().get(name).cloned()
    }

    /// Live replicas of `name` at the last sweep.
    pub fn replicas(&self, name: &str) -> usize {
        self.get(name).map_or(0, |entry| entry.replicas)
    }

    /// The declaration of function `name`, looking it up on the spot if it is not known yet;
    /// an unknown name is an error on `field` that lists the known ones.
    pub async fn spec(&self, name: &str, field: &str) -> Result<Arc<FunctionSpec>, FieldError> {
        if let Some(entry) = self.get(name) {
            return Ok(entry.spec);
        }
        if orbit_contract::descriptor::check_name(name).is_ok() && self.may_look_up(name) {
            self.look_up(name).await;
            if let Some(entry) = self.get(name) {
                return Ok(entry.spec);
            }
        }
        let known = self.names();
        Err(FieldError::new(
            field,
            if known.is_empty() {
                format!("unknown model '{name}'; no function is deployed")
            } else {
                format!("unknown model '{name}'; available: {}", known.join(", "))
            },
        ))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.inner
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rate-limits on-the-spot lookups per name.
    fn may_look_up(&self, name: &str) -> bool {
        let mut misses = self
            .inner
            .misses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if misses.len() >= MAX_MISSES {
            misses.retain(|_, at| now.duration_since(*at) < MISS_INTERVAL);
        }
        match misses.get(name) {
            Some(at) if now.duration_since(*at) < MISS_INTERVAL => false,
            _ if misses.len() >= MAX_MISSES => false,
            _ => {
                misses.insert(name.to_string(), now);
                true
            }
        }
    }

    /// Learns `name` from the catalog and from a replica's `$SRV.INFO`, whichever answers.
    async fn look_up(&self, name: &str) {
        let (stored, live) = tokio::join!(self.catalog_entry(name), self.info(name));
        if let Some(descriptor) = live {
            self.learn(descriptor, Some(1), None);
        } else if let Some(descriptor) = stored {
            self.learn(descriptor, None, Some(true));
        }
    }

    async fn catalog_entry(&self, name: &str) -> Option<FunctionDescriptor> {
        let store = self
            .inner
            .jetstream
            .get_key_value(FUNCTIONS_BUCKET)
            .await
            .ok()?;
        let value = store.get(name).await.ok()??;
        serde_json::from_slice(&value).ok()
    }

    /// The descriptor one replica of `name` (or of `name` with service id `id`) publishes.
    async fn info_of(&self, subject: String) -> Option<FunctionDescriptor> {
        let reply = tokio::time::timeout(
            INFO_TIMEOUT,
            self.inner.client.request(subject, bytes::Bytes::new()),
        )
        .await
        .ok()?
        .ok()?;
        let info: Info = serde_json::from_slice(&reply.payload).ok()?;
        let json = info
            .endpoints
            .iter()
            .find_map(|e| e.metadata.as_ref()?.get(DESCRIPTOR_METADATA_KEY))?;
        let descriptor: FunctionDescriptor = serde_json::from_str(json).ok()?;
        (descriptor.name == info.name).then_some(descriptor)
    }

    async fn info(&self, name: &str) -> Option<FunctionDescriptor> {
        self.info_of(format!("$SRV.INFO.{name}")).await
    }

    /// Adds or replaces a function. `replicas` and `in_catalog` update those facts when given.
    fn learn(
        &self,
        descriptor: FunctionDescriptor,
        replicas: Option<usize>,
        in_catalog: Option<bool>,
    ) {
        let name = descriptor.name.clone();
        let digest = descriptor.digest();
        let mut entries = self.write();
        if let Some(entry) = entries.get_mut(&name) {
            if let Some(replicas) = replicas {
                entry.replicas = replicas;
            }
            if let Some(in_catalog) = in_catalog {
                entry.in_catalog = in_catalog;
            }
            if entry.digest == digest {
                return;
            }
        }
        match FunctionSpec::new(descriptor) {
            Ok(spec) => {
                let previous = entries.get(&name);
                let entry = Entry {
                    spec: Arc::new(spec),
                    replicas: replicas.or(previous.map(|e| e.replicas)).unwrap_or(0),
                    in_catalog: in_catalog
                        .or(previous.map(|e| e.in_catalog))
                        .unwrap_or(false),
                    digest,
                };
                tracing::info!(function = %name, version = %entry.descriptor().version,
                    replicas = entry.replicas, "function learned");
                entries.insert(name, entry);
            }
            Err(err) => {
                tracing::warn!(function = %name, error = %err, "declaration refused; function ignored")
            }
        }
    }

    async fn follow_catalog(self, shutdown: Shutdown) {
        loop {
            match catalog::watch(&self.inner.jetstream).await {
                Ok(changes) => {
                    tokio::pin!(changes);
                    loop {
                        let change = tokio::select! {
                            change = changes.next() => change,
                            _ = shutdown.wait() => return,
                        };
                        match change {
                            Some(Change::Registered(descriptor)) => {
                                self.learn(*descriptor, None, Some(true))
                            }
                            Some(Change::Removed(name)) => self.forget(&name),
                            None => break,
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot follow the function catalog"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// A function left the catalog: it is forgotten unless replicas still announce it.
    fn forget(&self, name: &str) {
        let mut entries = self.write();
        if let Some(entry) = entries.get_mut(name) {
            if entry.replicas == 0 {
                entries.remove(name);
                tracing::info!(function = %name, "function removed");
            } else {
                entry.in_catalog = false;
            }
        }
    }

    async fn sweep_every(self, interval: Duration, shutdown: Shutdown) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => self.sweep().await,
                _ = shutdown.wait() => return,
            }
        }
    }

    /// One discovery sweep: count replicas per function, fetch descriptors that changed.
    async fn sweep(&self) {
        let Some(pings) = self.ping_all().await else {
            return;
        };
        let mut live: HashMap<String, (HashSet<String>, HashSet<String>)> = HashMap::new();
        for ping in pings {
            let Some(digest) = ping.metadata.get(DIGEST_METADATA_KEY) else {
                continue; // not an Orbit function
            };
            let (ids, digests) = live.entry(ping.name.clone()).or_default();
            if ids.insert(ping.id.clone()) && !digests.contains(digest) {
                let known = self.get(&ping.name).is_some_and(|e| &e.digest == digest);
                if !known {
                    if let Some(descriptor) = self
                        .info_of(format!("$SRV.INFO.{}.{}", ping.name, ping.id))
                        .await
                    {
                        self.learn(descriptor, None, None);
                    }
                }
                digests.insert(digest.clone());
            }
        }
        let mut entries = self.write();
        entries.retain(|name, entry| {
            entry.replicas = live.get(name).map_or(0, |(ids, _)| ids.len());
            metrics::gauge!("orbit_function_replicas", "function" => name.clone())
                .set(entry.replicas as f64);
            entry.replicas > 0 || entry.in_catalog
        });
    }

    async fn ping_all(&self) -> Option<Vec<Ping>> {
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.ok()?;
        client
            .publish_with_reply("$SRV.PING", inbox, bytes::Bytes::new())
            .await
            .ok()?;
        client.flush().await.ok()?;
        let deadline = tokio::time::Instant::now() + PING_WINDOW;
        let mut pings = Vec::new();
        while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if let Ok(ping) = serde_json::from_slice::<Ping>(&reply.payload) {
                pings.push(ping);
            }
        }
        Some(pings)
    }
}
