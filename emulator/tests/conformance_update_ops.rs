//! Conformance: the update operators, findAndModify and distinct.

mod common;

use bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;

async fn updated(collection: &mongodb::Collection<Document>, update: Document) -> Document {
    collection
        .update_one(doc! { "_id": 1 }, update)
        .await
        .unwrap();
    collection
        .find_one(doc! { "_id": 1 })
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn arithmetic_and_comparison_operators() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("ops"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_one(doc! { "_id": 1, "n": 10, "low": 5, "high": 5, "name": "x" })
            .await
            .unwrap();
        let after = updated(
            &collection,
            doc! {
                "$mul": { "n": 2.5 },
                "$min": { "low": 3, "absentMin": 1 },
                "$max": { "high": 3 },
                "$rename": { "name": "label" },
                "$inc": { "counter": 1i64 },
            },
        )
        .await;
        assert_eq!(after.get_f64("n"), Ok(25.0), "{}", target.name);
        assert_eq!(after.get_i32("low"), Ok(3), "{}", target.name);
        assert_eq!(after.get_i32("high"), Ok(5), "{}", target.name);
        assert_eq!(after.get_i32("absentMin"), Ok(1), "{}", target.name);
        assert_eq!(after.get_str("label"), Ok("x"), "{}", target.name);
        assert!(!after.contains_key("name"), "{}", target.name);
        assert_eq!(after.get_i64("counter"), Ok(1), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn array_operators() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("arrays"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_one(doc! { "_id": 1, "set": [1, 2], "list": [1, 2, 3, 4], "gone": [1, 2, 1] })
            .await
            .unwrap();
        let after = updated(
            &collection,
            doc! {
                "$addToSet": { "set": { "$each": [2, 3] } },
                "$pop": { "list": -1 },
                "$pullAll": { "gone": [1] },
                "$push": { "fresh": { "$each": ["b", "a"], "$position": 0 } },
            },
        )
        .await;
        assert_eq!(
            after.get_array("set").unwrap(),
            &vec![Bson::Int32(1), Bson::Int32(2), Bson::Int32(3)],
            "{}",
            target.name
        );
        assert_eq!(
            after.get_array("list").unwrap(),
            &vec![Bson::Int32(2), Bson::Int32(3), Bson::Int32(4)],
            "{}",
            target.name
        );
        assert_eq!(
            after.get_array("gone").unwrap(),
            &vec![Bson::Int32(2)],
            "{}",
            target.name
        );
        assert_eq!(
            after.get_array("fresh").unwrap(),
            &vec![Bson::String("b".into()), Bson::String("a".into())],
            "{}",
            target.name
        );
        let dated = updated(&collection, doc! { "$currentDate": { "when": true } }).await;
        assert!(dated.get_datetime("when").is_ok(), "{}", target.name);
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn find_and_modify_returns_before_or_after() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("fam"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many(vec![doc! { "_id": 1, "n": 1 }, doc! { "_id": 2, "n": 2 }])
            .await
            .unwrap();
        let before = collection
            .find_one_and_update(doc! {}, doc! { "$inc": { "n": 10 } })
            .sort(doc! { "n": -1 })
            .await
            .unwrap();
        assert_eq!(before, Some(doc! { "_id": 2, "n": 2 }), "{}", target.name);
        let after = collection
            .find_one_and_update(doc! { "_id": 1 }, doc! { "$inc": { "n": 10 } })
            .return_document(ReturnDocument::After)
            .await
            .unwrap();
        assert_eq!(after, Some(doc! { "_id": 1, "n": 11 }), "{}", target.name);
        let upserted = collection
            .find_one_and_replace(doc! { "_id": 3 }, doc! { "n": 3 })
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .unwrap();
        assert_eq!(upserted, Some(doc! { "_id": 3, "n": 3 }), "{}", target.name);
        let removed = collection
            .find_one_and_delete(doc! { "n": 12 })
            .await
            .unwrap();
        assert_eq!(removed, Some(doc! { "_id": 2, "n": 12 }), "{}", target.name);
        let nothing = collection
            .find_one_and_delete(doc! { "n": 99 })
            .await
            .unwrap();
        assert_eq!(nothing, None, "{}", target.name);
        assert_eq!(
            collection.count_documents(doc! {}).await.unwrap(),
            2,
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}

#[tokio::test]
async fn distinct_flattens_arrays_in_bson_order() {
    for target in common::targets().await {
        let db = target.client.database(&common::unique_db("distinct"));
        let collection = db.collection::<Document>("c");
        collection
            .insert_many(vec![
                doc! { "_id": 1, "tag": "b" },
                doc! { "_id": 2, "tag": ["a", "b"] },
                doc! { "_id": 3, "tag": 1 },
                doc! { "_id": 4 },
            ])
            .await
            .unwrap();
        let values = collection.distinct("tag", doc! {}).await.unwrap();
        assert_eq!(
            values,
            vec![
                Bson::Int32(1),
                Bson::String("a".into()),
                Bson::String("b".into())
            ],
            "{}",
            target.name
        );
        db.drop().await.unwrap();
    }
}
