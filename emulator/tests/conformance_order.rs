//! Conformance: BSON comparison order across every type, exact numeric comparison and type
//! bracketing of range operators, in sorts, filters and `$expr`.

mod common;

use bson::{
    doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime, Document, Regex, Timestamp,
};
use futures::TryStreamExt;

/// Returns one `_id` of every BSON type that can be an `_id`, in ascending BSON order.
fn ids_in_bson_order() -> Vec<Bson> {
    vec![
        Bson::MinKey,
        Bson::Null,
        Bson::Double(f64::NAN),
        Bson::Double(-1.5),
        Bson::Int32(1),
        Bson::Int64(9_007_199_254_740_992),
        Bson::Int64(9_007_199_254_740_993),
        Bson::String(String::new()),
        Bson::String("a".into()),
        Bson::Document(doc! { "a": 1 }),
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![1],
        }),
        Bson::ObjectId(ObjectId::from_bytes([1; 12])),
        Bson::Boolean(false),
        Bson::Boolean(true),
        Bson::DateTime(DateTime::from_millis(-1)),
        Bson::Timestamp(Timestamp {
            time: 1,
            increment: 0,
        }),
        Bson::JavaScriptCode("f()".into()),
        Bson::MaxKey,
    ]
}

async fn ids(cursor: mongodb::Cursor<Document>) -> Vec<Bson> {
    cursor
        .map_ok(|d| d.get("_id").unwrap().clone())
        .try_collect()
        .await
        .unwrap()
}

fn same(a: &[Bson], b: &[Bson]) -> bool {
    // Compare through the canonical extended JSON so NaN equals NaN.
    let text = |v: &[Bson]| -> Vec<String> {
        v.iter()
            .map(|b| b.clone().into_canonical_extjson().to_string())
            .collect()
    };
    text(a) == text(b)
}

#[tokio::test]
async fn sort_follows_bson_order_across_types() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("order"));
        let collection = db.collection::<Document>("c");
        let expected = ids_in_bson_order();
        let mut shuffled: Vec<Document> = expected
            .iter()
            .map(|id| doc! { "_id": id.clone() })
            .collect();
        shuffled.reverse();
        shuffled.swap(2, 9);
        collection.insert_many(shuffled).await.unwrap();
        let ascending = ids(collection
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .unwrap())
        .await;
        assert!(
            same(&ascending, &expected),
            "{}: {ascending:?}",
            target.name
        );
        let descending = ids(collection
            .find(doc! {})
            .sort(doc! { "_id": -1 })
            .await
            .unwrap())
        .await;
        let mut reversed = expected.clone();
        reversed.reverse();
        assert!(
            same(&descending, &reversed),
            "{}: {descending:?}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn range_operators_are_type_bracketed() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("bracket"));
        let collection = db.collection::<Document>("c");
        let all = ids_in_bson_order();
        collection
            .insert_many(all.iter().map(|id| doc! { "_id": id.clone() }))
            .await
            .unwrap();
        let numbers_from_one = ids(collection
            .find(doc! { "_id": { "$gte": 1 } })
            .sort(doc! { "_id": 1 })
            .await
            .unwrap())
        .await;
        assert!(
            same(&numbers_from_one, &all[4..7]),
            "{}: a number bound matches numbers only: {numbers_from_one:?}",
            target.name
        );
        let strings = ids(collection
            .find(doc! { "_id": { "$lt": "b" } })
            .await
            .unwrap())
        .await;
        assert_eq!(strings.len(), 2, "{}: {strings:?}", target.name);
        let everything = collection
            .count_documents(doc! { "_id": { "$gte": Bson::MinKey } })
            .await
            .unwrap();
        assert_eq!(everything as usize, all.len(), "{}", target.name);
        let up_to_max = collection
            .count_documents(doc! { "_id": { "$lte": Bson::MaxKey } })
            .await
            .unwrap();
        assert_eq!(up_to_max as usize, all.len(), "{}", target.name);
        let above_min = collection
            .count_documents(doc! { "_id": { "$gt": Bson::MinKey } })
            .await
            .unwrap();
        assert_eq!(above_min as usize, all.len() - 1, "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn int64_above_2_pow_53_compares_exactly() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("exact"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many(vec![
                doc! { "_id": 1, "v": 9_007_199_254_740_993i64 },
                doc! { "_id": 2, "v": 9_007_199_254_740_992.0f64 },
                doc! { "_id": 3, "v": "1.0".parse::<bson::Decimal128>().unwrap() },
                doc! { "_id": 4, "v": f64::NAN },
            ])
            .await
            .unwrap();
        let equal_double = collection
            .count_documents(doc! { "v": 9_007_199_254_740_992.0f64 })
            .await
            .unwrap();
        assert_eq!(equal_double, 1, "{}", target.name);
        let above = collection
            .count_documents(doc! { "v": { "$gt": 9_007_199_254_740_992.0f64 } })
            .await
            .unwrap();
        assert_eq!(above, 1, "{}", target.name);
        let one = collection.count_documents(doc! { "v": 1 }).await.unwrap();
        assert_eq!(one, 1, "{}: Int32 1 equals Decimal128 1.0", target.name);
        let nan = collection
            .count_documents(doc! { "v": f64::NAN })
            .await
            .unwrap();
        assert_eq!(nan, 1, "{}: NaN equals NaN", target.name);
        let below = collection
            .count_documents(doc! { "v": { "$lt": 0 } })
            .await
            .unwrap();
        assert_eq!(
            below, 0,
            "{}: NaN is not less than 0 in a filter",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn expr_ranges_follow_full_bson_order() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("expr"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many(vec![
                doc! { "_id": 1, "v": 5 },
                doc! { "_id": 2, "v": "text" },
                doc! { "_id": 3, "v": Bson::Null },
                doc! { "_id": 4, "v": ObjectId::from_bytes([0; 12]) },
            ])
            .await
            .unwrap();
        let found = ids(collection
            .find(doc! { "$expr": { "$gt": ["$v", 4] } })
            .sort(doc! { "_id": 1 })
            .await
            .unwrap())
        .await;
        assert_eq!(
            found,
            vec![Bson::Int32(1), Bson::Int32(2), Bson::Int32(4)],
            "{}: $expr compares across types",
            target.name
        );
        let plain = collection
            .count_documents(doc! { "v": { "$gt": 4 } })
            .await
            .unwrap();
        assert_eq!(plain, 1, "{}: the query operator is bracketed", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn sort_missing_fields_and_arrays() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("sortarr"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many(vec![
                doc! { "_id": 1, "v": [3, 10] },
                doc! { "_id": 2, "v": 5 },
                doc! { "_id": 3 },
                doc! { "_id": 4, "v": "s" },
            ])
            .await
            .unwrap();
        let ascending = ids(collection
            .find(doc! {})
            .sort(doc! { "v": 1 })
            .await
            .unwrap())
        .await;
        assert_eq!(
            ascending,
            vec![
                Bson::Int32(3),
                Bson::Int32(1),
                Bson::Int32(2),
                Bson::Int32(4)
            ],
            "{}",
            target.name
        );
        let descending = ids(collection
            .find(doc! {})
            .sort(doc! { "v": -1 })
            .await
            .unwrap())
        .await;
        assert_eq!(
            descending,
            vec![
                Bson::Int32(4),
                Bson::Int32(1),
                Bson::Int32(2),
                Bson::Int32(3)
            ],
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn regex_and_operators_on_strings() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("regex"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many(vec![
                doc! { "_id": 1, "name": "Alpha" },
                doc! { "_id": 2, "name": "beta" },
                doc! { "_id": 3, "name": ["gamma", "ALPHABET"] },
            ])
            .await
            .unwrap();
        let regex = Regex {
            pattern: "^alpha".into(),
            options: "i".into(),
        };
        let matched = collection
            .count_documents(doc! { "name": regex })
            .await
            .unwrap();
        assert_eq!(matched, 2, "{}", target.name);
        let typed = collection
            .count_documents(doc! { "name": { "$type": "array" } })
            .await
            .unwrap();
        assert_eq!(typed, 1, "{}", target.name);
        let not = collection
            .count_documents(doc! { "name": { "$not": { "$regex": "^b" } } })
            .await
            .unwrap();
        assert_eq!(not, 2, "{}", target.name);
        db.drop().await.unwrap();
    }
}
