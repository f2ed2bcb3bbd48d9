//! Start-up options and the server personality.

use std::str::FromStr;

/// Which server the emulator imitates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Personality {
    /// A MongoDB 7.0 replica-set primary.
    #[default]
    MongoDb,
    /// Azure Cosmos DB for MongoDB (RU), reported as server version 6.0.
    CosmosRu,
    /// Azure Cosmos DB for MongoDB (vCore).
    VCore,
}

impl FromStr for Personality {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "mongodb" => Ok(Personality::MongoDb),
            "cosmos-ru" => Ok(Personality::CosmosRu),
            "vcore" => Ok(Personality::VCore),
            other => Err(format!(
                "unknown personality '{other}': expected mongodb, cosmos-ru or vcore"
            )),
        }
    }
}

impl std::fmt::Display for Personality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Personality::MongoDb => "mongodb",
            Personality::CosmosRu => "cosmos-ru",
            Personality::VCore => "vcore",
        })
    }
}

/// Options for [`crate::start`].
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    pub personality: Personality,
    /// TCP port on 127.0.0.1; 0 picks any free port.
    pub port: u16,
    /// User name and password for SCRAM-SHA-256. `None` accepts every client without auth.
    pub user: Option<(String, String)>,
    /// Number of change-log entries kept for change streams; older ones are forgotten and
    /// resuming before them fails with ChangeStreamHistoryLost (286).
    pub history_size: usize,
    /// Request-unit budget per second for the `cosmos-ru` personality; `None` is unlimited.
    pub ru_per_second: Option<u64>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            personality: Personality::MongoDb,
            port: 0,
            user: None,
            history_size: 100_000,
            ru_per_second: None,
        }
    }
}
