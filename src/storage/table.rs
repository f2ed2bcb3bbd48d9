//! The Table Storage client: table creation, entity CRUD with ETags, and queries.

use reqwest::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, IF_MATCH};
use reqwest::Method;
use serde_json::{Map, Value};

use super::auth::Service;
use super::batch::{self, BatchOperation};
use super::entity::{odata_string_literal, validate_key, Entity};
use super::pipeline::{StorageRequest, StorageResponse};
use super::url_path::{encode, resource_url};
use super::{StorageAccount, StorageError};

/// JSON with type annotations only where JSON alone is ambiguous (Int64, DateTime, Binary, Guid).
pub(crate) const ACCEPT_JSON: &str = "application/json;odata=minimalmetadata";

/// The ETag condition of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// Unconditional (`If-Match: *`).
    Any,
    /// Only if the entity still has this ETag; otherwise [`StorageError::PreconditionFailed`].
    Etag(String),
}

impl IfMatch {
    pub(crate) fn header_value(&self) -> &str {
        match self {
            IfMatch::Any => "*",
            IfMatch::Etag(etag) => etag,
        }
    }
}

/// A client for one table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TableClient {
    account: StorageAccount,
    name: String,
}

impl TableClient {
    pub(crate) fn new(account: StorageAccount, name: &str) -> Self {
        Self {
            account,
            name: name.to_owned(),
        }
    }

    /// Returns the table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the table, or does nothing if it exists.
    pub async fn create_if_not_exists(&self) -> Result<(), StorageError> {
        self.validate_name()?;
        let body = serde_json::to_vec(&serde_json::json!({ "TableName": self.name }))
            .expect("a JSON object serializes");
        let request = self.request(
            "create_table",
            Method::POST,
            "Tables".to_owned(),
            &[],
            vec![json_content_type(), prefer_no_content()],
            body,
        )?;
        match self.send(&request).await {
            Ok(_) => Ok(()),
            Err(StorageError::Http(409, code, _)) if code == "TableAlreadyExists" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Deletes the table and every entity in it. A missing table is not an error.
    pub async fn delete_table(&self) -> Result<(), StorageError> {
        self.validate_name()?;
        let path = format!("Tables({})", encode(&odata_string_literal(&self.name)));
        let request = self.request(
            "delete_table",
            Method::DELETE,
            path,
            &[],
            vec![],
            Vec::new(),
        )?;
        match self.send(&request).await {
            Ok(_) => Ok(()),
            Err(StorageError::Http(404, code, _)) if code == "TableNotFound" => Ok(()),
            Err(StorageError::NotFound) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Reads one entity. A missing entity is `Ok(None)`; a missing table is an error.
    pub async fn get(
        &self,
        partition_key: &str,
        row_key: &str,
    ) -> Result<Option<Entity>, StorageError> {
        self.validate_name()?;
        let path = self.entity_path(partition_key, row_key)?;
        let request = self.request("get_entity", Method::GET, path, &[], vec![], Vec::new())?;
        let response = match self.send(&request).await {
            Ok(response) => response,
            Err(StorageError::NotFound) => return Ok(None),
            Err(error) => return Err(error),
        };
        let wire = parse_json_object(&response.body)?;
        Entity::from_wire(wire, response.header("etag")).map(Some)
    }

    /// Inserts a new entity and returns its ETag. An existing entity is
    /// [`StorageError::Conflict`].
    ///
    /// NOTE: when a transient failure hides whether the first attempt was stored, the retry may get
    /// `Conflict` for the entity this call inserted.
    pub async fn insert(&self, entity: &Entity) -> Result<String, StorageError> {
        self.validate_name()?;
        entity.validate()?;
        let body = serde_json::to_vec(&entity.to_wire()?).expect("a JSON object serializes");
        let request = self.request(
            "insert_entity",
            Method::POST,
            encode(&self.name),
            &[],
            vec![json_content_type(), prefer_no_content()],
            body,
        )?;
        let response = self.send(&request).await?;
        etag_of(&response)
    }

    /// Replaces an existing entity and returns its new ETag. A stale ETag is
    /// [`StorageError::PreconditionFailed`] and a missing entity is [`StorageError::NotFound`].
    pub async fn update(
        &self,
        entity: &Entity,
        condition: IfMatch,
    ) -> Result<String, StorageError> {
        self.put_entity("update_entity", entity, Some(condition))
            .await
    }

    /// Inserts the entity or replaces it whatever its ETag, and returns the new ETag.
    pub async fn upsert(&self, entity: &Entity) -> Result<String, StorageError> {
        self.put_entity("upsert_entity", entity, None).await
    }

    async fn put_entity(
        &self,
        operation: &'static str,
        entity: &Entity,
        condition: Option<IfMatch>,
    ) -> Result<String, StorageError> {
        self.validate_name()?;
        entity.validate()?;
        let body = serde_json::to_vec(&entity.to_wire()?).expect("a JSON object serializes");
        let mut headers = vec![json_content_type()];
        if let Some(condition) = condition {
            headers.push((IF_MATCH, header_value(condition.header_value())?));
        }
        let path = self.entity_path(&entity.partition_key, &entity.row_key)?;
        let request = self.request(operation, Method::PUT, path, &[], headers, body)?;
        let response = self.send(&request).await?;
        etag_of(&response)
    }

    /// Deletes an entity. A missing entity is `Ok(())`; a stale ETag is
    /// [`StorageError::PreconditionFailed`].
    pub async fn delete(
        &self,
        partition_key: &str,
        row_key: &str,
        condition: IfMatch,
    ) -> Result<(), StorageError> {
        self.validate_name()?;
        let path = self.entity_path(partition_key, row_key)?;
        let headers = vec![(IF_MATCH, header_value(condition.header_value())?)];
        let request = self.request(
            "delete_entity",
            Method::DELETE,
            path,
            &[],
            headers,
            Vec::new(),
        )?;
        match self.send(&request).await {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Returns every entity that matches the OData `filter` (all entities when `None`), following
    /// continuation tokens until the last page. Build string literals in the filter with
    /// [`odata_string_literal`].
    pub async fn query(&self, filter: Option<&str>) -> Result<Vec<Entity>, StorageError> {
        self.validate_name()?;
        let mut entities = Vec::new();
        let mut continuation: Option<(String, Option<String>)> = None;
        loop {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(filter) = filter {
                query.push(("$filter", filter));
            }
            if let Some((next_partition, next_row)) = &continuation {
                query.push(("NextPartitionKey", next_partition));
                if let Some(next_row) = next_row {
                    query.push(("NextRowKey", next_row));
                }
            }
            let path = format!("{}()", encode(&self.name));
            let request = self.request(
                "query_entities",
                Method::GET,
                path,
                &query,
                vec![],
                Vec::new(),
            )?;
            let response = self.send(&request).await?;
            entities.extend(parse_query_page(&response.body)?);

            let next_partition = response.header("x-ms-continuation-nextpartitionkey");
            let next_row = response.header("x-ms-continuation-nextrowkey");
            match next_partition {
                Some(next_partition) => {
                    continuation = Some((next_partition.to_owned(), next_row.map(str::to_owned)));
                }
                None => return Ok(entities),
            }
        }
    }

    /// Returns every entity of one partition.
    pub async fn query_partition(&self, partition_key: &str) -> Result<Vec<Entity>, StorageError> {
        validate_key("PartitionKey", partition_key)?;
        let filter = format!("PartitionKey eq {}", odata_string_literal(partition_key));
        self.query(Some(&filter)).await
    }

    /// Applies up to 100 operations on one partition atomically: all succeed or none does. A
    /// failing operation fails the batch with that operation's error, for example
    /// [`StorageError::Conflict`] or [`StorageError::PreconditionFailed`].
    pub async fn submit_batch(&self, operations: Vec<BatchOperation>) -> Result<(), StorageError> {
        self.validate_name()?;
        if operations.is_empty() {
            return Ok(());
        }
        let batch_url = resource_url(self.account.table_endpoint(), "$batch", &[])?;
        let table_url = resource_url(self.account.table_endpoint(), &encode(&self.name), &[])?;
        let encoded = batch::encode(
            &operations,
            self.account.table_endpoint(),
            &table_url,
            &|pk, rk| self.entity_path(pk, rk),
        )?;

        let request = StorageRequest {
            service: Service::Table,
            operation: "submit_batch",
            resource: &self.name,
            method: Method::POST,
            url: batch_url,
            headers: vec![
                (ACCEPT, HeaderValue::from_static(ACCEPT_JSON)),
                (CONTENT_TYPE, header_value(&encoded.content_type)?),
                data_service_version(),
            ],
            body: encoded.body,
        };
        let response = self.account.pipeline().send(&request).await?;
        batch::check_response(&response, operations.len())
    }

    fn validate_name(&self) -> Result<(), StorageError> {
        validate_table_name(&self.name)
    }

    /// Builds `table(PartitionKey='..',RowKey='..')` with quotes doubled and values percent-encoded.
    pub(crate) fn entity_path(
        &self,
        partition_key: &str,
        row_key: &str,
    ) -> Result<String, StorageError> {
        validate_key("PartitionKey", partition_key)?;
        validate_key("RowKey", row_key)?;
        Ok(format!(
            "{}(PartitionKey={},RowKey={})",
            encode(&self.name),
            encode(&odata_string_literal(partition_key)),
            encode(&odata_string_literal(row_key))
        ))
    }

    fn request(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        query: &[(&str, &str)],
        mut headers: Vec<(HeaderName, HeaderValue)>,
        body: Vec<u8>,
    ) -> Result<StorageRequest<'_>, StorageError> {
        headers.push((ACCEPT, HeaderValue::from_static(ACCEPT_JSON)));
        headers.push(data_service_version());
        Ok(StorageRequest {
            service: Service::Table,
            operation,
            resource: &self.name,
            method,
            url: resource_url(self.account.table_endpoint(), &path, query)?,
            headers,
            body,
        })
    }

    async fn send(&self, request: &StorageRequest<'_>) -> Result<StorageResponse, StorageError> {
        self.account.pipeline().send(request).await
    }
}

/// Table names are 3 to 63 letters and digits, starting with a letter.
fn validate_table_name(name: &str) -> Result<(), StorageError> {
    let valid = (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    if valid && !name.eq_ignore_ascii_case("tables") {
        Ok(())
    } else {
        Err(StorageError::InvalidInput(format!(
            "table name {name:?} is invalid: use 3 to 63 letters and digits, starting with a letter"
        )))
    }
}

pub(crate) fn json_content_type() -> (HeaderName, HeaderValue) {
    (CONTENT_TYPE, HeaderValue::from_static("application/json"))
}

/// Asks the service to answer writes with 204 and an ETag instead of echoing the entity.
fn prefer_no_content() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("prefer"),
        HeaderValue::from_static("return-no-content"),
    )
}

pub(crate) fn data_service_version() -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("dataserviceversion"),
        HeaderValue::from_static("3.0"),
    )
}

fn header_value(value: &str) -> Result<HeaderValue, StorageError> {
    HeaderValue::from_str(value).map_err(|_| {
        StorageError::InvalidInput(format!("{value:?} is not a valid HTTP header value"))
    })
}

fn etag_of(response: &StorageResponse) -> Result<String, StorageError> {
    response.header("etag").map(str::to_owned).ok_or_else(|| {
        StorageError::Transport("the table service returned no ETag for a write".into())
    })
}

fn parse_json_object(body: &[u8]) -> Result<Map<String, Value>, StorageError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(StorageError::Transport(
            "the table service returned JSON that is not an object".into(),
        )),
        Err(error) => Err(StorageError::Transport(format!(
            "the table service returned invalid JSON: {error}"
        ))),
    }
}

fn parse_query_page(body: &[u8]) -> Result<Vec<Entity>, StorageError> {
    let mut page = parse_json_object(body)?;
    let Some(Value::Array(rows)) = page.remove("value") else {
        return Err(StorageError::Transport(
            "the table service returned a query page without a `value` array".into(),
        ));
    };
    rows.into_iter()
        .map(|row| match row {
            Value::Object(object) => Entity::from_wire(object, None),
            _ => Err(StorageError::Transport(
                "the table service returned a query row that is not an object".into(),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_checked() {
        for name in ["abc", "Jobs2024", &"a".repeat(63)] {
            assert!(validate_table_name(name).is_ok(), "{name}");
        }
        for name in ["ab", "1abc", "job-state", "tables", &"a".repeat(64)] {
            assert!(validate_table_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn entity_path_escapes_keys() {
        let account = StorageAccount::from_connection_string("UseDevelopmentStorage=true").unwrap();
        let table = account.table("jobs");
        assert_eq!(
            table.entity_path("o'brien", "a b+c%").unwrap(),
            "jobs(PartitionKey=%27o%27%27brien%27,RowKey=%27a%20b%2Bc%25%27)"
        );
        assert!(table.entity_path("a/b", "r").is_err());
    }
}
