//! State shared by every connection of one emulator instance.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, RwLock};

use bson::RawDocumentBuf;

use crate::auth::Credential;
use crate::changes::ChangeLog;
use crate::cursor::CursorTable;
use crate::error::{code, CommandError, CommandResult};
use crate::failpoint::FailPoints;
use crate::options::EmulatorOptions;
use crate::personality::RequestUnits;
use crate::store::{Catalog, SharedCollection};

pub struct ServerState {
    pub options: EmulatorOptions,
    /// The port actually bound, reported as `host:port` in `hello`.
    pub port: u16,
    pub catalog: RwLock<Catalog>,
    pub cursors: Mutex<CursorTable>,
    pub changes: ChangeLog,
    pub fail_points: FailPoints,
    pub request_units: RequestUnits,
    /// Commands recorded for tests (`shardCollection`), listed by `emulatorRecordedCommands`.
    pub recorded: Mutex<Vec<RawDocumentBuf>>,
    next_connection_id: AtomicI64,
    credential: Option<Credential>,
}

impl ServerState {
    pub fn new(options: EmulatorOptions, port: u16) -> ServerState {
        let options_credential = options
            .user
            .as_ref()
            .map(|(user, password)| Credential::new(user, password));
        ServerState {
            changes: ChangeLog::new(options.history_size),
            request_units: RequestUnits::new(options.ru_per_second),
            options,
            port,
            catalog: RwLock::new(Catalog::default()),
            cursors: Mutex::new(CursorTable::default()),
            fail_points: FailPoints::default(),
            recorded: Mutex::new(Vec::new()),
            next_connection_id: AtomicI64::new(1),
            credential: options_credential,
        }
    }

    /// Returns the SCRAM credential of the configured user, if authentication is on.
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    pub fn next_connection_id(&self) -> i64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn collection(&self, db: &str, name: &str) -> Option<SharedCollection> {
        self.catalog
            .read()
            .expect("catalog lock")
            .collection(db, name)
    }

    /// Returns the collection, creating it (and its database) on first use, as writes do.
    pub fn collection_or_create(&self, db: &str, name: &str) -> CommandResult<SharedCollection> {
        if let Some(existing) = self.collection(db, name) {
            return Ok(existing);
        }
        validate_collection_name(db, name)?;
        let mut catalog = self.catalog.write().expect("catalog lock");
        Ok(catalog.create_collection(db, name, RawDocumentBuf::new()).0)
    }
}

/// Rejects names `mongod` rejects: empty, containing `$` or NUL, or a `system.` collection.
pub fn validate_collection_name(db: &str, name: &str) -> CommandResult<()> {
    if db.is_empty() || db.contains(['/', '\\', '.', ' ', '"', '$', '\0']) {
        return Err(CommandError::new(
            code::INVALID_NAMESPACE,
            format!("Invalid database name: '{db}'"),
        ));
    }
    if name.is_empty() || name.contains('$') || name.contains('\0') || name.starts_with('.') {
        return Err(CommandError::new(
            code::INVALID_NAMESPACE,
            format!("Invalid collection name: {name}"),
        ));
    }
    if name.starts_with("system.") {
        return Err(CommandError::new(
            code::INVALID_NAMESPACE,
            format!("Invalid system namespace: {db}.{name}"),
        ));
    }
    Ok(())
}
