//! The function catalog: every deployed function's descriptor in a JetStream key-value bucket.
//!
//! Live discovery (`$SRV.PING` / `$SRV.INFO`) only sees functions with a replica running. A
//! serverless platform also accepts work for a function that is deployed but scaled to zero, or
//! whose replicas are all restarting: its async jobs wait in JOBS until one runs. So each
//! function writes its own descriptor here when it starts (and `<binary> register` does it at
//! deploy time, without serving); the gateway reads the bucket besides discovery. A model
//! repository host removes a model's entry when the model leaves the repository.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use orbit_contract::subjects::FUNCTIONS_BUCKET;
use orbit_contract::FunctionDescriptor;

/// The catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("function catalog ({FUNCTIONS_BUCKET}): {0}")]
pub struct CatalogError(String);

impl CatalogError {
    fn new(err: impl std::fmt::Display) -> Self {
        Self(err.to_string())
    }
}

/// The catalog bucket, created with `replicas` replicas if it does not exist yet.
pub async fn ensure(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, CatalogError> {
    if let Ok(store) = js.get_key_value(FUNCTIONS_BUCKET).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: FUNCTIONS_BUCKET.to_string(),
            description: "Orbit function descriptors, one per function".to_string(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another process created it meanwhile.
        Err(err) => js
            .get_key_value(FUNCTIONS_BUCKET)
            .await
            .map_err(|_| CatalogError::new(err)),
    }
}

async fn open(js: &jetstream::Context) -> Result<kv::Store, CatalogError> {
    js.get_key_value(FUNCTIONS_BUCKET)
        .await
        .map_err(CatalogError::new)
}

/// Writes (or replaces) `descriptor` under its function's name.
pub async fn register(
    js: &jetstream::Context,
    descriptor: &FunctionDescriptor,
) -> Result<(), CatalogError> {
    let store = open(js).await?;
    let value = serde_json::to_vec(descriptor).map_err(CatalogError::new)?;
    store
        .put(&descriptor.name, value.into())
        .await
        .map_err(CatalogError::new)?;
    tracing::debug!(function = %descriptor.name, "registered in the function catalog");
    Ok(())
}

/// Removes function `name` from the catalog.
pub async fn unregister(js: &jetstream::Context, name: &str) -> Result<(), CatalogError> {
    open(js)
        .await?
        .delete(name)
        .await
        .map_err(CatalogError::new)
}

/// One change seen in the catalog.
#[derive(Debug)]
pub enum Change {
    /// A function was registered (or registered again with a new descriptor).
    Registered(Box<FunctionDescriptor>),
    /// A function was removed.
    Removed(String),
}

/// Follows the catalog: first every current entry, then each change as it happens. Entries
/// that are not descriptors are skipped with a log line (anyone with rights can write here).
pub async fn watch(
    js: &jetstream::Context,
) -> Result<impl futures::Stream<Item = Change>, CatalogError> {
    let store = open(js).await?;
    let entries = store
        .watch_with_history(">")
        .await
        .map_err(CatalogError::new)?;
    Ok(entries.filter_map(|entry| async move {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                tracing::warn!(error = %err, "function catalog watch error");
                return None;
            }
        };
        match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => Some(Change::Removed(entry.key)),
            kv::Operation::Put => match serde_json::from_slice::<FunctionDescriptor>(&entry.value) {
                Ok(descriptor) if descriptor.name == entry.key => {
                    Some(Change::Registered(Box::new(descriptor)))
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(key = %entry.key, "catalog entry is not a descriptor of that function; ignored");
                    None
                }
            },
        }
    }))
}
