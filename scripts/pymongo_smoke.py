#!/usr/bin/env python3
"""Checks that pymongo works against the mongo-emulator binary: insert, find, aggregate, watch.

Run with: python3 scripts/pymongo_smoke.py [--binary PATH] [--personality mongodb|cosmos-ru|vcore]

The binary defaults to $CARGO_TARGET_DIR/debug/mongo-emulator (or target/debug/mongo-emulator);
build it first with `cargo build -p mongo-emulator`. When pymongo is not installed, the script
prints why it skips and exits 0, so it adds no Python dependency to the main test run.
"""

import argparse
import os
import re
import subprocess
import sys


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    return os.path.join(target, "debug", "mongo-emulator")


def start_emulator(binary, personality):
    process = subprocess.Popen(
        [binary, "--port", "0", "--personality", personality],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    match = re.search(r"mongodb://127\.0\.0\.1:(\d+)/", line)
    if not match:
        process.kill()
        raise SystemExit(f"emulator did not report its address; first output line: {line!r}")
    return process, int(match.group(1))


def check(client):
    collection = client["smoke"]["items"]
    collection.drop()

    result = collection.insert_many([{"_id": i, "group": i % 3, "value": i * 10} for i in range(30)])
    assert len(result.inserted_ids) == 30, result.inserted_ids

    found = list(collection.find({"value": {"$gte": 250}}, {"_id": 1}).sort("_id", -1))
    assert [d["_id"] for d in found] == [29, 28, 27, 26, 25], found

    totals = list(
        collection.aggregate(
            [
                {"$group": {"_id": "$group", "total": {"$sum": "$value"}}},
                {"$sort": {"_id": 1}},
            ]
        )
    )
    assert totals == [
        {"_id": 0, "total": 1350},
        {"_id": 1, "total": 1450},
        {"_id": 2, "total": 1550},
    ], totals

    with collection.watch(max_await_time_ms=100) as stream:
        collection.insert_one({"_id": "watched"})
        event = None
        for _ in range(50):
            event = stream.try_next()
            if event is not None:
                break
        assert event is not None, "no change event arrived"
        assert event["operationType"] == "insert", event
        assert event["documentKey"] == {"_id": "watched"}, event
        assert stream.resume_token is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=default_binary(), help="path of the mongo-emulator binary")
    parser.add_argument("--personality", default="mongodb", help="personality passed to the emulator")
    args = parser.parse_args()

    try:
        import pymongo
    except ImportError:
        print("pymongo smoke test skipped: pymongo is not installed (pip install pymongo)")
        return 0
    if not os.path.exists(args.binary):
        print(f"pymongo smoke test failed: emulator binary not found at {args.binary}")
        return 1

    process, port = start_emulator(args.binary, args.personality)
    try:
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true")
        check(client)
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(f"pymongo smoke test passed with pymongo {pymongo.version} against port {port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
