"""Seed data for the Trellis benchmark (tests/load/bench.sh).

Creates one tenant with a live session in Redis and N tags stored directly
in MongoDB/FerretDB in the server's stored shape:

    {_id: ObjectId, tenant_id: ObjectId, name, color,
     created_at: date, updated_at: date, version: int64}

and prints, one per line, for the shell to read:

    tenant_id=<24 hex>
    tag_id=<24 hex>          (one of the seeded tags)
    token=<JWT>              (HS256, valid for one hour)

The session key is t:{tid}:sess:{sid}, a hash with user_id=<sub>, as the
server's auth phase expects. Settings come from the same environment
variables as the server (TRELLIS_MONGO_URI, TRELLIS_REDIS_URL,
TRELLIS_JWT_SECRET, TRELLIS_JWT_ISSUER, TRELLIS_JWT_AUDIENCE); flags
override them.
"""

import argparse
import datetime
import os
import secrets
import sys
import time

import bson
import jwt
import pymongo
import redis

TOKEN_LIFETIME_SECONDS = 3600
# The session outlives the token a little, so a run never ends in 401s
# because the session went first.
SESSION_LIFETIME_SECONDS = TOKEN_LIFETIME_SECONDS + 600
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", None)


def parse_args(argv):
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mongo-uri", default=env("TRELLIS_MONGO_URI", "mongodb://127.0.0.1:27017/trellis"))
    parser.add_argument("--redis-url", default=env("TRELLIS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--secret", default=env("TRELLIS_JWT_SECRET"))
    parser.add_argument("--issuer", default=env("TRELLIS_JWT_ISSUER", "trellis"))
    parser.add_argument("--audience", default=env("TRELLIS_JWT_AUDIENCE", "trellis-api"))
    parser.add_argument("--tags", type=int, default=1000, help="number of tags to insert (default 1000)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("a JWT secret is needed: --secret or TRELLIS_JWT_SECRET")
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


def seed_session(redis_url, tenant_hex, session_id, user_hex):
    client = redis.Redis.from_url(redis_url)
    try:
        key = f"t:{tenant_hex}:sess:{session_id}"
        client.hset(key, "user_id", user_hex)
        client.expire(key, SESSION_LIFETIME_SECONDS)
    finally:
        client.close()


def mint_token(args, tenant_hex, session_id, user_hex):
    now = int(time.time())
    claims = {
        "sub": user_hex,
        "tid": tenant_hex,
        "sid": session_id,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECONDS,
        "iss": args.issuer,
        "aud": args.audience,
    }
    return jwt.encode(claims, args.secret, algorithm="HS256")


def main(argv):
    args = parse_args(argv)
    tenant_id = bson.ObjectId()
    user_id = bson.ObjectId()
    session_id = secrets.token_urlsafe(16)

    tag_ids = seed_tags(args.mongo_uri, tenant_id, args.tags)
    seed_session(args.redis_url, str(tenant_id), session_id, str(user_id))
    token = mint_token(args, str(tenant_id), session_id, str(user_id))

    # A tag from the middle, not the first or last inserted.
    print(f"tenant_id={tenant_id}")
    print(f"tag_id={tag_ids[len(tag_ids) // 2]}")
    print(f"token={token}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
