//! Per-personality differences between the imitated servers (versions and limits), and the
//! Cosmos DB (RU) request-unit budget.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{code, CommandError};
use crate::options::Personality;

/// Values a personality reports in `hello` and `buildInfo`, and the limits it enforces.
pub struct Profile {
    pub version: &'static str,
    pub max_wire_version: i32,
    pub set_name: &'static str,
    /// `maxWriteBatchSize` in `hello`; the driver splits bulk writes to fit it.
    pub max_write_batch_size: i32,
    /// The largest document accepted by inserts and updates.
    pub max_document_size: usize,
    /// The largest `_id` value in bytes, where the service documents one.
    pub max_id_size: Option<usize>,
}

impl Personality {
    pub fn profile(self) -> Profile {
        match self {
            Personality::MongoDb => Profile {
                version: "7.0.12",
                max_wire_version: 21,
                set_name: "rs0",
                max_write_batch_size: 100_000,
                max_document_size: 16 * 1024 * 1024,
                max_id_size: None,
            },
            // Cosmos DB for MongoDB (RU) names its replica set "globaldb" and limits documents
            // to 2 MB unless the account enables 16 MB support. The emulator reports a 6.0
            // account (wire version 17) because the mongodb driver 3.9 refuses servers below
            // wire version 9 (MongoDB 4.4), so a 4.2 account (wire version 8) cannot be used.
            // NOTE: the exact wire versions RU accounts report for 5.0 and later are unconfirmed.
            Personality::CosmosRu => Profile {
                version: "6.0.0",
                max_wire_version: 17,
                set_name: "globaldb",
                max_write_batch_size: 100_000,
                max_document_size: 2 * 1024 * 1024,
                max_id_size: None,
            },
            // vCore documents 25,000 writes per batch, 16 MB documents and a 2 KB `_id`.
            Personality::VCore => Profile {
                version: "7.0.0",
                max_wire_version: 21,
                set_name: "rs0",
                max_write_batch_size: 25_000,
                max_document_size: 16 * 1024 * 1024,
                max_id_size: Some(2048),
            },
        }
    }
}

/// The request-unit budget of the `cosmos-ru` personality: a fixed number of request units per
/// one-second window. Charges beyond it fail with 16500 TooManyRequests and a `RetryAfterMs`
/// hint, as Cosmos DB reports throttling.
pub struct RequestUnits {
    state: Mutex<Budget>,
}

struct Budget {
    per_second: Option<u64>,
    window_start: Instant,
    used: f64,
    /// Name and charge of the last request, for `getLastRequestStatistics`.
    last: (String, f64),
}

/// Request units for reading a document of `bytes` bytes: 1 per started kilobyte.
pub fn read_charge(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// Request units for writing a document of `bytes` bytes: about 5.5 per started kilobyte, near
/// what Cosmos DB charges for an insert into a collection with default indexing.
pub fn write_charge(bytes: usize) -> f64 {
    5.5 * bytes.div_ceil(1024).max(1) as f64
}

impl RequestUnits {
    pub fn new(per_second: Option<u64>) -> RequestUnits {
        RequestUnits {
            state: Mutex::new(Budget {
                per_second,
                window_start: Instant::now(),
                used: 0.0,
                last: (String::new(), 0.0),
            }),
        }
    }

    pub fn set_per_second(&self, per_second: Option<u64>) {
        let mut budget = self.state.lock().expect("budget lock");
        budget.per_second = per_second;
        budget.used = 0.0;
        budget.window_start = Instant::now();
    }

    pub fn per_second(&self) -> Option<u64> {
        self.state.lock().expect("budget lock").per_second
    }

    /// Charges `units` for `command`, or returns the 16500 error when the window's budget is
    /// spent. A charge larger than the whole budget is allowed into any window that is not yet
    /// spent, and spends it, so a large read or write is slow rather than impossible even while
    /// small requests use part of every window.
    pub fn charge(&self, command: &str, units: f64) -> Result<(), CommandError> {
        let mut budget = self.state.lock().expect("budget lock");
        let Some(limit) = budget.per_second else {
            budget.last = (command.to_string(), units);
            return Ok(());
        };
        let elapsed = budget.window_start.elapsed();
        if elapsed >= Duration::from_secs(1) {
            budget.window_start = Instant::now();
            budget.used = 0.0;
        }
        if !admits(budget.used, units, limit as f64) {
            let retry_after = 1000u64
                .saturating_sub(budget.window_start.elapsed().as_millis() as u64)
                .max(1);
            budget.last = (command.to_string(), 0.0);
            return Err(too_many_requests(retry_after));
        }
        budget.used += units;
        budget.last = (command.to_string(), units);
        Ok(())
    }

    pub fn last_request(&self) -> (String, f64) {
        self.state.lock().expect("budget lock").last.clone()
    }
}

/// Decides whether a charge of `units` fits into a window that has `used` of its `limit`. A
/// charge larger than the whole budget fits into any window not yet spent. Admitting it only
/// into an unused window would starve it for as long as small requests arrive in every window.
fn admits(used: f64, units: f64, limit: f64) -> bool {
    if units > limit {
        used < limit
    } else {
        used == 0.0 || used + units <= limit
    }
}

/// Builds the throttling error in the form Cosmos DB (RU) reports it.
pub fn too_many_requests(retry_after_ms: u64) -> CommandError {
    CommandError::new(
        code::TOO_MANY_REQUESTS,
        format!(
            "Error=16500, RetryAfterMs={retry_after_ms}, Details='Response status code does not \
             indicate success: TooManyRequests (429); Substatus: 3200; Request rate is large. \
             More Request Units may be needed, so no changes were made. Please retry this request \
             later.'"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_charge_needs_room() {
        assert!(admits(0.0, 10.0, 100.0));
        assert!(admits(90.0, 10.0, 100.0));
        assert!(!admits(95.0, 10.0, 100.0));
        // A charge of the whole budget fits only into an unused window.
        assert!(admits(0.0, 100.0, 100.0));
        assert!(!admits(1.0, 100.0, 100.0));
    }

    #[test]
    fn oversized_charge_fits_unspent_window() {
        assert!(admits(0.0, 500.0, 100.0));
        assert!(admits(60.0, 500.0, 100.0));
        assert!(admits(99.5, 500.0, 100.0));
        assert!(!admits(100.0, 500.0, 100.0));
        assert!(!admits(600.0, 500.0, 100.0));
    }
}
