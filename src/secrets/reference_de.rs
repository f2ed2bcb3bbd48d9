//! Deserialization of [`CredentialRef`].
//!
//! Written by hand because serde's untagged enums report only "data did not match any variant",
//! which gives a caller neither the problem nor the shape to send. This visitor names the problem:
//! a connection string sent inline, an unknown key, a Key Vault reference without its secret
//! name. It never repeats a value it rejects, since that value may be a connection string.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::CredentialRef;

/// The two shapes a reference takes, quoted in every error.
const SHAPES: &str = "send {\"setting\": \"APP_SETTING_NAME\"} or \
    {\"vaultUri\": \"https://NAME.vault.azure.net/\", \"secretName\": \"SECRET\"}";

impl<'de> Deserialize<'de> for CredentialRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, not `deserialize_map`: for a string, serde_json's map path writes
        // the string into its error, and that string is likely a connection string.
        deserializer.deserialize_any(ReferenceVisitor)
    }
}

struct ReferenceVisitor;

impl ReferenceVisitor {
    fn inline_string<E: de::Error>() -> E {
        E::custom(format!(
            "a connection string cannot travel in a request; store it in an app setting or a \
             Key Vault secret and {SHAPES}"
        ))
    }
}

impl<'de> Visitor<'de> for ReferenceVisitor {
    type Value = CredentialRef;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a credential reference: {SHAPES}")
    }

    // A plain string is almost always a connection string pasted where its reference belongs.
    fn visit_str<E: de::Error>(self, _value: &str) -> Result<Self::Value, E> {
        Err(Self::inline_string())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut setting: Option<String> = None;
        let mut vault_uri: Option<String> = None;
        let mut secret_name: Option<String> = None;
        let mut secret_version: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "setting" => &mut setting,
                "vaultUri" => &mut vault_uri,
                "secretName" => &mut secret_name,
                "secretVersion" => &mut secret_version,
                other => {
                    // Read past the value without keeping it: it may be a secret.
                    map.next_value::<IgnoredAny>()?;
                    let lowered = other.to_ascii_lowercase();
                    if ["uri", "url", "connection", "password"]
                        .iter()
                        .any(|word| lowered.contains(word))
                    {
                        return Err(Self::inline_string());
                    }
                    return Err(de::Error::custom(format!(
                        "unknown field `{other}` in a credential reference; {SHAPES}"
                    )));
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom(format!(
                    "field `{key}` appears twice; send it once"
                )));
            }
            *slot = Some(map.next_value::<String>().map_err(|_| {
                de::Error::custom(format!("field `{key}` must be a string; {SHAPES}"))
            })?);
        }

        match (setting, vault_uri, secret_name) {
            (Some(setting), None, None) if secret_version.is_none() => {
                Ok(CredentialRef::Setting { setting })
            }
            (Some(_), _, _) => Err(de::Error::custom(format!(
                "a credential reference names either an app setting or a Key Vault secret, \
                 not both; {SHAPES}"
            ))),
            (None, Some(vault_uri), Some(secret_name)) => Ok(CredentialRef::KeyVault {
                vault_uri,
                secret_name,
                secret_version,
            }),
            (None, Some(_), None) => Err(de::Error::custom(
                "a Key Vault reference needs `secretName` next to `vaultUri`; add the name of \
                 the secret that holds the connection string",
            )),
            (None, None, Some(_)) => Err(de::Error::custom(
                "a Key Vault reference needs `vaultUri` next to `secretName`; add the vault's \
                 URI, such as https://NAME.vault.azure.net/",
            )),
            (None, None, None) => Err(de::Error::custom(format!(
                "the credential reference is empty; {SHAPES}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<CredentialRef, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn both_shapes_parse() {
        assert_eq!(
            parse(r#"{"setting":"SRC"}"#).unwrap(),
            CredentialRef::Setting {
                setting: "SRC".into()
            }
        );
        assert_eq!(
            parse(
                r#"{"vaultUri":"https://a.vault.azure.net/","secretName":"s","secretVersion":"v1"}"#
            )
            .unwrap(),
            CredentialRef::KeyVault {
                vault_uri: "https://a.vault.azure.net/".into(),
                secret_name: "s".into(),
                secret_version: Some("v1".into()),
            }
        );
    }

    #[test]
    fn serialized_form_reads_back() {
        for reference in [
            CredentialRef::Setting {
                setting: "SRC".into(),
            },
            CredentialRef::KeyVault {
                vault_uri: "https://a.vault.azure.net/".into(),
                secret_name: "s".into(),
                secret_version: None,
            },
        ] {
            let text = serde_json::to_string(&reference).unwrap();
            assert_eq!(parse(&text).unwrap(), reference, "{text}");
        }
    }

    #[test]
    fn inline_connection_strings_are_refused_without_echo() {
        for json in [
            r#""mongodb://user:hunter2@db.example/""#,
            r#"{"uri":"mongodb://user:hunter2@db.example/"}"#,
            r#"{"connectionString":"mongodb://user:hunter2@db.example/"}"#,
            r#"{"setting":"SRC","password":"hunter2"}"#,
        ] {
            let message = parse(json).unwrap_err();
            assert!(message.contains("cannot travel in a request"), "{message}");
            assert!(message.contains("\"setting\""), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn malformed_references_name_the_fix() {
        let cases = [
            (r#"{}"#, "empty"),
            (
                r#"{"vaultUri":"https://a.vault.azure.net/"}"#,
                "needs `secretName`",
            ),
            (r#"{"secretName":"s"}"#, "needs `vaultUri`"),
            (
                r#"{"setting":"S","vaultUri":"https://a.vault.azure.net/","secretName":"s"}"#,
                "not both",
            ),
            (r#"{"setting":"S","secretVersion":"v"}"#, "not both"),
            (r#"{"setting":7}"#, "`setting` must be a string"),
            (r#"{"setting":"A","setting":"B"}"#, "appears twice"),
            (r#"{"vault":"x"}"#, "unknown field `vault`"),
            (r#"42"#, "credential reference"),
        ];
        for (json, expected) in cases {
            let message = parse(json).unwrap_err();
            assert!(message.contains(expected), "{json}: {message}");
        }
    }
}
