//! The `failCommand` fail point, configured with `configureFailPoint` as on `mongod`.
//!
//! Semantics follow the server. Only the listed commands are affected. `blockConnection` first
//! delays the reply by `blockTimeMS`. Then `closeConnection` closes the socket without a reply;
//! otherwise `errorCode` fails the command, with `errorLabels` replacing the default labels;
//! otherwise `writeConcernError` is added to the reply of a command that ran. `times` counts
//! activations down and then turns the point off, and `skip` lets the first N matches through.

use std::sync::Mutex;
use std::time::Duration;

use bson::{rawdoc, RawBsonRef, RawDocument, RawDocumentBuf};

use crate::error::{is_retryable_write_code, CommandError, CommandResult};
use crate::query::number::Number;

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Off,
    AlwaysOn,
    Times(u64),
    Skip(u64),
    Probability(f64),
}

#[derive(Clone, Debug)]
struct FailCommand {
    mode: Mode,
    commands: Vec<String>,
    error_code: Option<i32>,
    error_labels: Option<Vec<String>>,
    close_connection: bool,
    block_for: Option<Duration>,
    write_concern_error: Option<RawDocumentBuf>,
    app_name: Option<String>,
    namespace: Option<String>,
}

/// The fail point's effect on one command.
#[derive(Debug, Default)]
pub struct Injection {
    pub block_for: Option<Duration>,
    pub close_connection: bool,
    pub error: Option<CommandError>,
    pub write_concern_error: Option<RawDocumentBuf>,
}

#[derive(Default)]
pub struct FailPoints {
    fail_command: Mutex<Option<FailCommand>>,
    /// Activations since the point was last configured, returned as `count`.
    times_entered: Mutex<u64>,
}

fn number(value: RawBsonRef<'_>, field: &str) -> CommandResult<f64> {
    Number::from_raw(value)
        .map(|n| n.to_f64())
        .ok_or_else(|| CommandError::type_mismatch(format!("'{field}' must be a number")))
}

fn parse_mode(value: RawBsonRef<'_>) -> CommandResult<Mode> {
    match value {
        RawBsonRef::String("alwaysOn") => Ok(Mode::AlwaysOn),
        RawBsonRef::String("off") => Ok(Mode::Off),
        RawBsonRef::Document(spec) => match spec.iter().next().transpose()? {
            Some(("times", n)) => Ok(Mode::Times(number(n, "times")? as u64)),
            Some(("skip", n)) => Ok(Mode::Skip(number(n, "skip")? as u64)),
            Some(("activationProbability", p)) => {
                let p = number(p, "activationProbability")?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(CommandError::bad_value(
                        "activationProbability must be between 0 and 1",
                    ));
                }
                Ok(Mode::Probability(p))
            }
            _ => Err(CommandError::bad_value(
                "mode must be 'alwaysOn', 'off', or a document with 'times', 'skip' or 'activationProbability'",
            )),
        },
        _ => Err(CommandError::type_mismatch(
            "'mode' must be a string or a document",
        )),
    }
}

fn parse_fail_command(mode: Mode, data: &RawDocument) -> CommandResult<FailCommand> {
    let mut commands = Vec::new();
    match data.get("failCommands")? {
        Some(RawBsonRef::Array(array)) => {
            for item in array {
                match item? {
                    RawBsonRef::String(name) => commands.push(name.to_string()),
                    _ => {
                        return Err(CommandError::type_mismatch(
                            "failCommands must hold strings",
                        ))
                    }
                }
            }
        }
        _ if mode == Mode::Off => {}
        _ => {
            return Err(CommandError::bad_value(
                "'failCommands' must be an array of command names",
            ))
        }
    }
    let error_code = match data.get("errorCode")? {
        Some(value) => Some(number(value, "errorCode")? as i32),
        None => None,
    };
    let error_labels = match data.get("errorLabels")? {
        Some(RawBsonRef::Array(array)) => Some(
            array
                .into_iter()
                .filter_map(|v| v.ok().and_then(|v| v.as_str().map(str::to_string)))
                .collect(),
        ),
        Some(_) => return Err(CommandError::type_mismatch("errorLabels must be an array")),
        None => None,
    };
    let flag = |name: &str| matches!(data.get(name), Ok(Some(RawBsonRef::Boolean(true))));
    let block_for = if flag("blockConnection") {
        let millis = match data.get("blockTimeMS")? {
            Some(value) => number(value, "blockTimeMS")?,
            None => {
                return Err(CommandError::bad_value(
                    "'blockTimeMS' is required when 'blockConnection' is true",
                ))
            }
        };
        Some(Duration::from_millis(millis as u64))
    } else {
        None
    };
    let write_concern_error = match data.get("writeConcernError")? {
        Some(RawBsonRef::Document(wce)) => Some(wce.to_raw_document_buf()),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "writeConcernError must be an object",
            ))
        }
        None => None,
    };
    Ok(FailCommand {
        mode,
        commands,
        error_code,
        error_labels,
        close_connection: flag("closeConnection"),
        block_for,
        write_concern_error,
        app_name: data.get_str("appName").ok().map(str::to_string),
        namespace: data.get_str("namespace").ok().map(str::to_string),
    })
}

impl FailPoints {
    /// Runs `configureFailPoint` and returns its reply fields.
    pub fn configure(&self, body: &RawDocument) -> CommandResult<RawDocumentBuf> {
        let name = body.get_str("configureFailPoint").map_err(|_| {
            CommandError::type_mismatch("'configureFailPoint' must name a fail point")
        })?;
        if name != "failCommand" {
            return Err(CommandError::bad_value(format!(
                "Cannot find failpoint: {name} (this emulator implements only failCommand)"
            )));
        }
        let mode = parse_mode(
            body.get("mode")?
                .ok_or_else(|| CommandError::bad_value("'mode' is required"))?,
        )?;
        let empty = RawDocumentBuf::new();
        let data = match body.get("data")? {
            Some(RawBsonRef::Document(data)) => data,
            Some(_) => return Err(CommandError::type_mismatch("'data' must be an object")),
            None => &empty,
        };
        let config = parse_fail_command(mode.clone(), data)?;
        let mut times = self.times_entered.lock().expect("fail point lock");
        let previous = *times;
        *times = 0;
        *self.fail_command.lock().expect("fail point lock") = if mode == Mode::Off {
            None
        } else {
            Some(config)
        };
        Ok(rawdoc! { "count": previous as i64 })
    }

    /// Decides what the fail point does to `command`, counting the activation.
    pub fn check(
        &self,
        command: &str,
        namespace: Option<&str>,
        app_name: Option<&str>,
        is_write: bool,
    ) -> Option<Injection> {
        let mut guard = self.fail_command.lock().expect("fail point lock");
        let config = guard.as_mut()?;
        if !config.commands.iter().any(|c| c == command) {
            return None;
        }
        if let Some(wanted) = &config.app_name {
            if app_name != Some(wanted.as_str()) {
                return None;
            }
        }
        if let Some(wanted) = &config.namespace {
            if namespace != Some(wanted.as_str()) {
                return None;
            }
        }
        match &mut config.mode {
            Mode::Off => return None,
            Mode::AlwaysOn => {}
            Mode::Times(left) => {
                *left -= 1;
            }
            Mode::Skip(left) => {
                if *left > 0 {
                    *left -= 1;
                    return None;
                }
            }
            Mode::Probability(p) => {
                if rand::random::<f64>() >= *p {
                    return None;
                }
            }
        }
        let config = config.clone();
        if config.mode == Mode::Times(0) {
            *guard = None;
        }
        drop(guard);
        *self.times_entered.lock().expect("fail point lock") += 1;
        let error = config
            .error_code
            .filter(|_| !config.close_connection)
            .map(|code| {
                let mut error = CommandError::new(
                    code,
                    format!("Failing command {command} due to 'failCommand' failpoint"),
                );
                error.labels = match &config.error_labels {
                    Some(labels) => labels.clone(),
                    None if is_write && is_retryable_write_code(code) => {
                        vec!["RetryableWriteError".to_string()]
                    }
                    None => Vec::new(),
                };
                error
            });
        Some(Injection {
            block_for: config.block_for,
            close_connection: config.close_connection,
            write_concern_error: if error.is_none() {
                config.write_concern_error
            } else {
                None
            },
            error,
        })
    }
}
