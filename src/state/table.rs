use serde::de::DeserializeOwned;
use serde::Serialize;

use super::SCHEMA_VERSION;
use crate::storage::{BatchOperation, Entity, IfMatch, StorageError, TableClient};

/// A record with the ETag it was read with.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the row since it was read (HTTP 412).
    #[error("the record changed since it was read")]
    Conflict,
    #[error("the record already exists")]
    AlreadyExists,
    #[error("a job named {0:?} already exists; choose another name")]
    NameTaken(String),
    #[error("stored record {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("table storage failed: {0}")]
    Storage(#[from] StorageError),
}

/// Table string properties hold at most 64 KiB of UTF-16, so records are split into parts of
/// this many UTF-16 code units (`Data`, `Data1`, `Data2`, ...). The 1 MiB entity limit still
/// bounds a record; the storage client rejects a larger entity with an error naming it.
const PART_UTF16_UNITS: usize = 30_000;

fn part_name(index: usize) -> String {
    if index == 0 {
        "Data".to_string()
    } else {
        format!("Data{index}")
    }
}

/// Splits `text` into pieces of at most `max_units` UTF-16 code units, never inside a character.
fn split_utf16(text: &str, max_units: usize) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut units = 0;
    for c in text.chars() {
        if units + c.len_utf16() > max_units {
            parts.push(String::new());
            units = 0;
        }
        units += c.len_utf16();
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_characters_whole() {
        let text = format!("{}{}", "a".repeat(5), "\u{1F600}".repeat(3));
        let parts = split_utf16(&text, 6);
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 6));
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_utf16("abc", 10), vec!["abc".to_string()]);
        assert_eq!(split_utf16("", 10), vec![String::new()]);
    }
}

/// A table whose rows hold one JSON record each.
#[derive(Clone)]
pub(super) struct JsonTable {
    client: TableClient,
}

impl JsonTable {
    pub fn new(client: TableClient) -> Self {
        JsonTable { client }
    }

    pub fn client(&self) -> &TableClient {
        &self.client
    }

    fn entity<T: Serialize>(
        pk: &str,
        rk: &str,
        value: &T,
        columns: &[(&str, &str)],
    ) -> Result<Entity, StoreError> {
        let data = serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
            key: format!("{pk}/{rk}"),
            reason: e.to_string(),
        })?;
        let mut entity = Entity::new(pk, rk);
        entity.set_i64("SchemaVersion", SCHEMA_VERSION);
        let parts = split_utf16(&data, PART_UTF16_UNITS);
        entity.set_i64("DataParts", parts.len() as i64);
        for (i, part) in parts.iter().enumerate() {
            entity.set_str(&part_name(i), part.as_str());
        }
        for (name, value) in columns {
            entity.set_str(name, *value);
        }
        Ok(entity)
    }

    fn decode<T: DeserializeOwned>(entity: Entity) -> Result<Versioned<T>, StoreError> {
        let key = format!("{}/{}", entity.partition_key, entity.row_key);
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.clone(),
            reason,
        };
        let version = entity.get_i64("SchemaVersion").unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(corrupt(format!(
                "schema version {version} is newer than this build understands ({SCHEMA_VERSION}); \
                 run the newer build"
            )));
        }
        let parts = entity.get_i64("DataParts").unwrap_or(1).max(1);
        let mut data = String::new();
        for i in 0..parts as usize {
            let part = entity
                .get_str(&part_name(i))
                .ok_or_else(|| corrupt(format!("the {} property is missing", part_name(i))))?;
            data.push_str(part);
        }
        let value = serde_json::from_str(&data).map_err(|e| corrupt(e.to_string()))?;
        Ok(Versioned {
            value,
            etag: entity.etag.clone().unwrap_or_default(),
        })
    }

    pub async fn insert<T: Serialize>(
        &self,
        pk: &str,
        rk: &str,
        value: &T,
        columns: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let entity = Self::entity(pk, rk, value, columns)?;
        match self.client.insert(&entity).await {
            Ok(etag) => Ok(etag),
            Err(StorageError::Conflict) => Err(StoreError::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn replace<T: Serialize>(
        &self,
        pk: &str,
        rk: &str,
        value: &T,
        columns: &[(&str, &str)],
        etag: &str,
    ) -> Result<String, StoreError> {
        let entity = Self::entity(pk, rk, value, columns)?;
        match self
            .client
            .update(&entity, IfMatch::Etag(etag.to_string()))
            .await
        {
            Ok(etag) => Ok(etag),
            Err(StorageError::PreconditionFailed | StorageError::NotFound) => {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Inserts or replaces rows of one partition, in entity group transactions of at most 100
    /// rows and about 2 MiB of record JSON each (the service limits a batch body to 4 MiB).
    pub async fn upsert_rows<T: Serialize>(
        &self,
        pk: &str,
        rows: &[(String, &T)],
    ) -> Result<(), StoreError> {
        const MAX_ROWS: usize = 100;
        const MAX_JSON_BYTES: usize = 2 * 1024 * 1024;
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for (rk, value) in rows {
            let entity = Self::entity(pk, rk, value, &[])?;
            let bytes: usize = (0..)
                .map_while(|i| entity.get_str(&part_name(i)))
                .map(str::len)
                .sum();
            if !batch.is_empty()
                && (batch.len() == MAX_ROWS || batch_bytes + bytes > MAX_JSON_BYTES)
            {
                self.client.submit_batch(std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch_bytes += bytes;
            batch.push(BatchOperation::Upsert(entity));
        }
        if !batch.is_empty() {
            self.client.submit_batch(batch).await?;
        }
        Ok(())
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        pk: &str,
        rk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        match self.client.get(pk, rk).await? {
            Some(entity) => Self::decode(entity).map(Some),
            None => Ok(None),
        }
    }

    pub async fn query_partition<T: DeserializeOwned>(
        &self,
        pk: &str,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        self.client
            .query_partition(pk)
            .await?
            .into_iter()
            .map(Self::decode)
            .collect()
    }

    pub async fn query<T: DeserializeOwned>(
        &self,
        filter: &str,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        self.client
            .query(Some(filter))
            .await?
            .into_iter()
            .map(Self::decode)
            .collect()
    }
}
