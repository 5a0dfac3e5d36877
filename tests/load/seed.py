"""Seed data for the Trellis benchmark (tests/load/bench.sh).

Signs a tenant up through the running server (POST /v1/signup, so the
session, its permissions and the access token are the server's own), then
stores N tags directly in MongoDB/FerretDB in the server's stored shape:

    {_id: ObjectId, tenant_id: ObjectId, name, color,
     created_at: date, updated_at: date, version: int64}

and prints, one per line, for the shell to read:

    tenant_id=<24 hex>
    tag_id=<24 hex>          (one of the seeded tags)
    token=<JWT>              (the owner's access token)
    slug=<tenant slug>       (for the login benchmark)
    email=<owner email>
    password=<owner password>
"""

import argparse
import datetime
import os
import secrets
import sys

import bson
import requests
import pymongo

# The session outlives the token a little, so a run never ends in 401s
# because the session went first.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", None)


def parse_args(argv):
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mongo-uri", default=env("TRELLIS_MONGO_URI", "mongodb://127.0.0.1:27017/trellis"))
    parser.add_argument("--redis-url", default=env("TRELLIS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--base-url", default=env("TRELLIS_BENCH_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--tags", type=int, default=1000, help="number of tags to insert (default 1000)")
    args = parser.parse_args(argv)
    if args.tags < 1:
        parser.error("--tags must be at least 1")
    return args


def tag_documents(tenant_id, count):
    """The tags as the server stores them; timestamps at millisecond
    precision, one millisecond apart so created_at order is stable."""
    start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    docs = []
    for i in range(count):
        at = start + datetime.timedelta(milliseconds=i)
        docs.append(
            {
                "_id": bson.ObjectId(),
                "tenant_id": tenant_id,
                "name": f"bench-tag-{i:05d}",
                "color": COLORS[i % len(COLORS)],
                "created_at": at,
                "updated_at": at,
                "version": bson.Int64(1),
            }
        )
    return docs


def seed_tags(mongo_uri, tenant_id, count):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        database = client.get_default_database()
        result = database["tags"].insert_many(tag_documents(tenant_id, count), ordered=True)
        ids = result.inserted_ids
        if len(ids) != count:
            raise RuntimeError(f"inserted {len(ids)} tags, wanted {count}")
        return ids
    finally:
        client.close()


def signup(base_url):
    slug = "bench-" + secrets.token_hex(4)
    body = {"tenant_name": "Bench", "tenant_slug": slug, "email": "owner@bench.test",
            "password": "bench-password-" + secrets.token_hex(4), "name": "Bench Owner"}
    r = requests.post(base_url + "/v1/signup", json=body, timeout=30)
    if r.status_code != 201:
        raise RuntimeError(f"signup answered {r.status_code}: {r.text}")
    j = r.json()
    return j["tenant"]["id"], j["access_token"], body


def main(argv):
    args = parse_args(argv)
    tenant_hex, token, account = signup(args.base_url)
    tag_ids = seed_tags(args.mongo_uri, bson.ObjectId(tenant_hex), args.tags)

    # A tag from the middle, not the first or last inserted.
    print(f"tenant_id={tenant_hex}")
    print(f"tag_id={tag_ids[len(tag_ids) // 2]}")
    print(f"token={token}")
    print(f"slug={account['tenant_slug']}")
    print(f"email={account['email']}")
    print(f"password={account['password']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
