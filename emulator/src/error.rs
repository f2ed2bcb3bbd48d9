//! Server errors as MongoDB reports them: a numeric code, its code name, a message and labels.

use bson::{rawdoc, RawArrayBuf, RawDocumentBuf};

/// Error codes the emulator returns, with the code names `mongod` uses for them
/// (from the server's `error_codes.yml`).
pub mod code {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const BAD_VALUE: i32 = 2;
    pub const NO_SUCH_KEY: i32 = 4;
    pub const HOST_UNREACHABLE: i32 = 6;
    pub const HOST_NOT_FOUND: i32 = 7;
    pub const FAILED_TO_PARSE: i32 = 9;
    pub const UNAUTHORIZED: i32 = 13;
    pub const TYPE_MISMATCH: i32 = 14;
    pub const INVALID_BSON: i32 = 22;
    pub const INVALID_LENGTH: i32 = 16;
    pub const AUTHENTICATION_FAILED: i32 = 18;
    pub const ILLEGAL_OPERATION: i32 = 20;
    pub const NAMESPACE_NOT_FOUND: i32 = 26;
    pub const INDEX_NOT_FOUND: i32 = 27;
    pub const CONFLICTING_UPDATE_OPERATORS: i32 = 40;
    pub const CURSOR_NOT_FOUND: i32 = 43;
    pub const NAMESPACE_EXISTS: i32 = 48;
    pub const EXCEEDED_TIME_LIMIT: i32 = 50;
    pub const COMMAND_NOT_FOUND: i32 = 59;
    pub const IMMUTABLE_FIELD: i32 = 66;
    pub const CANNOT_CREATE_INDEX: i32 = 67;
    pub const INDEX_ALREADY_EXISTS: i32 = 68;
    pub const INVALID_OPTIONS: i32 = 72;
    pub const INVALID_NAMESPACE: i32 = 73;
    pub const INDEX_OPTIONS_CONFLICT: i32 = 85;
    pub const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
    pub const NETWORK_TIMEOUT: i32 = 89;
    pub const SHUTDOWN_IN_PROGRESS: i32 = 91;
    pub const WRITE_CONFLICT: i32 = 112;
    pub const COMMAND_NOT_SUPPORTED: i32 = 115;
    pub const INVALID_PIPELINE_OPERATOR: i32 = 168;
    pub const PRIMARY_STEPPED_DOWN: i32 = 189;
    pub const EXCEEDED_MEMORY_LIMIT: i32 = 16501;
    pub const CHANGE_STREAM_FATAL_ERROR: i32 = 280;
    pub const CHANGE_STREAM_HISTORY_LOST: i32 = 286;
    pub const LOCATION_40324: i32 = 40324;
    pub const DUPLICATE_KEY: i32 = 11000;
    pub const INTERRUPTED_AT_SHUTDOWN: i32 = 11600;
    pub const INTERRUPTED_DUE_TO_REPL_STATE_CHANGE: i32 = 11602;
    pub const NOT_WRITABLE_PRIMARY: i32 = 10107;
    pub const NOT_PRIMARY_NO_SECONDARY_OK: i32 = 13435;
    pub const NOT_PRIMARY_OR_SECONDARY: i32 = 13436;
    pub const BSON_OBJECT_TOO_LARGE: i32 = 10334;
    pub const TOO_MANY_REQUESTS: i32 = 16500;
    pub const SOCKET_EXCEPTION: i32 = 9001;
    pub const EXCEEDED_TIME_LIMIT_ALIAS: i32 = 262;
}

/// Returns the code name `mongod` reports for `code`, or an empty string when the code has none
/// (for example the numbered assertion codes such as 40324).
pub fn code_name(code: i32) -> &'static str {
    match code {
        1 => "InternalError",
        2 => "BadValue",
        4 => "NoSuchKey",
        6 => "HostUnreachable",
        7 => "HostNotFound",
        9 => "FailedToParse",
        11 => "UserNotFound",
        13 => "Unauthorized",
        14 => "TypeMismatch",
        16 => "InvalidLength",
        18 => "AuthenticationFailed",
        20 => "IllegalOperation",
        22 => "InvalidBSON",
        26 => "NamespaceNotFound",
        27 => "IndexNotFound",
        40 => "ConflictingUpdateOperators",
        43 => "CursorNotFound",
        48 => "NamespaceExists",
        50 => "MaxTimeMSExpired",
        52 => "DollarPrefixedFieldName",
        59 => "CommandNotFound",
        63 => "StaleShardVersion",
        66 => "ImmutableField",
        67 => "CannotCreateIndex",
        68 => "IndexAlreadyExists",
        72 => "InvalidOptions",
        73 => "InvalidNamespace",
        85 => "IndexOptionsConflict",
        86 => "IndexKeySpecsConflict",
        89 => "NetworkTimeout",
        91 => "ShutdownInProgress",
        112 => "WriteConflict",
        115 => "CommandNotSupported",
        133 => "FailedToSatisfyReadPreference",
        150 => "StaleEpoch",
        168 => "InvalidPipelineOperator",
        189 => "PrimarySteppedDown",
        234 => "RetryChangeStream",
        262 => "ExceededTimeLimit",
        263 => "OperationNotSupportedInTransaction",
        280 => "ChangeStreamFatalError",
        286 => "ChangeStreamHistoryLost",
        9001 => "SocketException",
        10107 => "NotWritablePrimary",
        10334 => "BSONObjectTooLarge",
        11000 => "DuplicateKey",
        11600 => "InterruptedAtShutdown",
        11602 => "InterruptedDueToReplStateChange",
        13388 => "StaleConfig",
        13435 => "NotPrimaryNoSecondaryOk",
        13436 => "NotPrimaryOrSecondary",
        16500 => "TooManyRequests",
        16501 => "ExceededMemoryLimit",
        _ => "",
    }
}

/// Codes for which `mongod` adds the `RetryableWriteError` label to a failed write command
/// (the server's list of retryable errors: network, shutdown and not-primary errors).
pub fn is_retryable_write_code(code: i32) -> bool {
    matches!(
        code,
        6 | 7 | 89 | 91 | 189 | 262 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436
    )
}

/// A command failure. It becomes the reply `{ok: 0, errmsg, code, codeName, errorLabels}`.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandError {
    pub code: i32,
    pub code_name: String,
    pub message: String,
    pub labels: Vec<String>,
    /// Extra fields that `mongod` puts beside the message, such as `keyPattern` for 11000.
    pub extra: Option<RawDocumentBuf>,
}

pub type CommandResult<T> = Result<T, CommandError>;

impl CommandError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CommandError {
            code,
            code_name: code_name(code).to_string(),
            message: message.into(),
            labels: Vec::new(),
            extra: None,
        }
    }

    pub fn bad_value(message: impl Into<String>) -> Self {
        Self::new(code::BAD_VALUE, message)
    }

    pub fn failed_to_parse(message: impl Into<String>) -> Self {
        Self::new(code::FAILED_TO_PARSE, message)
    }

    pub fn type_mismatch(message: impl Into<String>) -> Self {
        Self::new(code::TYPE_MISMATCH, message)
    }

    pub fn with_label(mut self, label: &str) -> Self {
        self.labels.push(label.to_string());
        self
    }

    pub fn with_extra(mut self, extra: RawDocumentBuf) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Encodes the error as a command reply body.
    pub fn to_reply(&self) -> RawDocumentBuf {
        let mut reply = rawdoc! {
            "ok": 0.0,
            "errmsg": self.message.as_str(),
            "code": self.code,
        };
        if !self.code_name.is_empty() {
            reply.append("codeName", self.code_name.as_str());
        }
        if let Some(extra) = &self.extra {
            for (key, value) in extra.iter().flatten() {
                reply.append_ref(key, value);
            }
        }
        if !self.labels.is_empty() {
            let mut labels = RawArrayBuf::new();
            for label in &self.labels {
                labels.push(label.as_str());
            }
            reply.append("errorLabels", labels);
        }
        reply
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code_name, self.code, self.message)
    }
}

impl std::error::Error for CommandError {}

impl From<bson::raw::Error> for CommandError {
    fn from(error: bson::raw::Error) -> Self {
        CommandError::new(code::INVALID_BSON, format!("invalid BSON: {error}"))
    }
}

impl From<bson::raw::ValueAccessError> for CommandError {
    fn from(error: bson::raw::ValueAccessError) -> Self {
        CommandError::new(code::INVALID_BSON, format!("invalid BSON value: {error}"))
    }
}

impl From<bson::ser::Error> for CommandError {
    fn from(error: bson::ser::Error) -> Self {
        CommandError::new(code::BAD_VALUE, format!("cannot encode BSON: {error}"))
    }
}
