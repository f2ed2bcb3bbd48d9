//! The public datasets the demo migrates, read from the `data/` folder of the npm package
//! `vega-datasets` (fetched by `scripts/fetch-datasets.sh`), and converted to BSON documents.

use std::path::{Path, PathBuf};

use bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use crate::json;

/// One source collection and the documents to load into it.
pub struct Dataset {
    pub database: &'static str,
    pub collection: &'static str,
    /// Origin of the documents, shown on the console.
    pub origin: String,
    pub documents: Vec<Document>,
}

impl Dataset {
    pub fn namespace(&self) -> String {
        format!("{}.{}", self.database, self.collection)
    }
}

/// Reads every dataset from `data_dir`, the largest first.
pub fn load_all(data_dir: &Path) -> anyhow::Result<Vec<Dataset>> {
    Ok(vec![
        Dataset {
            database: "aviation",
            collection: "flights",
            origin: "vega-datasets data/flights-200k.json".into(),
            documents: flights(&read(data_dir, "flights-200k.json")?)?,
        },
        Dataset {
            database: "cinema",
            collection: "movies",
            origin: "vega-datasets data/movies.json".into(),
            documents: movies(&read(data_dir, "movies.json")?)?,
        },
        Dataset {
            database: "geo",
            collection: "earthquakes",
            origin: "vega-datasets data/earthquakes.json".into(),
            documents: earthquakes(&read(data_dir, "earthquakes.json")?)?,
        },
    ])
}

fn read(data_dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path: PathBuf = data_dir.join(name);
    std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "reading {} failed: {e}; run scripts/fetch-datasets.sh or pass --data-dir",
            path.display()
        )
    })
}

/// Movies: an array of flat records without a key. Each gets an ObjectId `_id`, as drivers add one
/// to a document without `_id`. Values keep their JSON types, so a title such as `1776` stays a number and
/// release dates stay the strings the dataset has (`"Jun 12 1998"`).
pub fn movies(text: &[u8]) -> anyhow::Result<Vec<Document>> {
    let records = json::parse_documents(text).map_err(|e| anyhow::anyhow!("movies.json: {e}"))?;
    Ok(records
        .into_iter()
        .map(|record| with_id(Bson::ObjectId(ObjectId::new()), record))
        .collect())
}

/// Flights: an array of `{delay, distance, time}` records, where `delay` and `distance` are
/// integers and `time` is the departure hour as a fraction (`0.0`, `13.5`). The `_id` is the
/// record's position in the file as an Int32, so the collection has a numeric key.
pub fn flights(text: &[u8]) -> anyhow::Result<Vec<Document>> {
    let records =
        json::parse_documents(text).map_err(|e| anyhow::anyhow!("flights-200k.json: {e}"))?;
    records
        .into_iter()
        .enumerate()
        .map(|(row, record)| {
            let row = i32::try_from(row).map_err(|_| {
                anyhow::anyhow!("flights-200k.json has more rows than an Int32 `_id` can number")
            })?;
            Ok(with_id(Bson::Int32(row), record))
        })
        .collect()
}

/// Earthquakes: a GeoJSON FeatureCollection from the USGS feed, loaded as one document per
/// feature with the feature's `id` (such as `"ci37868143"`) as a string `_id`. The feed gives
/// `properties.time` and `properties.updated` as milliseconds since the Unix epoch, so those two
/// become BSON dates, which hold the same milliseconds.
pub fn earthquakes(text: &[u8]) -> anyhow::Result<Vec<Document>> {
    let collection =
        json::parse_document(text).map_err(|e| anyhow::anyhow!("earthquakes.json: {e}"))?;
    let features = collection
        .get_array("features")
        .map_err(|_| anyhow::anyhow!("earthquakes.json has no `features` array"))?;
    let mut documents = Vec::with_capacity(features.len());
    for (index, feature) in features.iter().enumerate() {
        let Bson::Document(feature) = feature else {
            anyhow::bail!("earthquakes.json: feature {index} is not an object");
        };
        let id = feature
            .get_str("id")
            .map_err(|_| anyhow::anyhow!("earthquakes.json: feature {index} has no string `id`"))?;
        let mut feature = feature.clone();
        if let Ok(properties) = feature.get_document_mut("properties") {
            epoch_millis_to_date(properties, "time");
            epoch_millis_to_date(properties, "updated");
        }
        documents.push(with_id(Bson::String(id.to_owned()), feature));
    }
    Ok(documents)
}

/// Replaces an integer field holding Unix epoch milliseconds with a BSON date in place.
fn epoch_millis_to_date(document: &mut Document, field: &str) {
    let millis = match document.get(field) {
        Some(Bson::Int64(value)) => *value,
        Some(Bson::Int32(value)) => i64::from(*value),
        _ => return,
    };
    if let Some(value) = document.get_mut(field) {
        *value = Bson::DateTime(DateTime::from_millis(millis));
    }
}

/// Returns `record` with `_id` as its first field, as MongoDB stores a generated `_id`.
fn with_id(id: Bson, record: Document) -> Document {
    let mut document = doc! { "_id": id };
    document.extend(record);
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movies_get_object_id_first() {
        let text = br#"[{"Title": "The Land Girls", "US Gross": 146083, "IMDB Rating": 6.1, "Director": null},
                        {"Title": 1776, "US Gross": 2500000000}]"#;
        let documents = movies(text).unwrap();
        assert_eq!(documents.len(), 2);
        let keys: Vec<&str> = documents[0].keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["_id", "Title", "US Gross", "IMDB Rating", "Director"]
        );
        assert!(matches!(documents[0].get("_id"), Some(Bson::ObjectId(_))));
        assert_eq!(documents[0].get("US Gross"), Some(&Bson::Int32(146_083)));
        assert_eq!(documents[0].get("IMDB Rating"), Some(&Bson::Double(6.1)));
        assert_eq!(documents[0].get("Director"), Some(&Bson::Null));
        assert_eq!(documents[1].get("Title"), Some(&Bson::Int32(1776)));
        assert_eq!(
            documents[1].get("US Gross"),
            Some(&Bson::Int64(2_500_000_000))
        );
        assert_ne!(documents[0].get("_id"), documents[1].get("_id"));
    }

    #[test]
    fn flights_keyed_by_row() {
        let text =
            br#"[{"delay":0,"distance":1452,"time":0.0},{"delay":-5,"distance":1589,"time":13.5}]"#;
        let documents = flights(text).unwrap();
        assert_eq!(
            documents[0],
            doc! { "_id": 0, "delay": 0, "distance": 1452, "time": 0.0 }
        );
        assert_eq!(
            documents[1],
            doc! { "_id": 1, "delay": -5, "distance": 1589, "time": 13.5 }
        );
    }

    #[test]
    fn earthquake_features_become_documents() {
        let text = br#"{"type":"FeatureCollection","metadata":{"count":1},"features":[
            {"type":"Feature","properties":{"mag":2,"time":1517966773840,"updated":1517966996303,"tz":-480},
             "geometry":{"type":"Point","coordinates":[-118.6671667,34.4945,26.49]},"id":"ci37868143"}]}"#;
        let documents = earthquakes(text).unwrap();
        assert_eq!(documents.len(), 1);
        let quake = &documents[0];
        assert_eq!(quake.get_str("_id").unwrap(), "ci37868143");
        let properties = quake.get_document("properties").unwrap();
        assert_eq!(
            properties.get("time"),
            Some(&Bson::DateTime(DateTime::from_millis(1_517_966_773_840)))
        );
        assert_eq!(
            properties.get("updated"),
            Some(&Bson::DateTime(DateTime::from_millis(1_517_966_996_303)))
        );
        assert_eq!(properties.get("tz"), Some(&Bson::Int32(-480)));
        let coordinates = quake
            .get_document("geometry")
            .unwrap()
            .get_array("coordinates")
            .unwrap();
        assert_eq!(coordinates[0], Bson::Double(-118.6671667));
    }

    #[test]
    fn earthquake_without_id_is_rejected() {
        let text = br#"{"features":[{"type":"Feature","properties":{}}]}"#;
        let error = earthquakes(text).unwrap_err();
        assert!(error.to_string().contains("feature 0 has no string `id`"));
    }

    #[test]
    fn missing_file_names_fetch_script() {
        let error = load_all(Path::new("/nonexistent-demo-data")).err().unwrap();
        assert!(error.to_string().contains("scripts/fetch-datasets.sh"));
    }
}
