"""Seed data for the CRM benchmark (tests/load/bench.sh, BENCH_ONLY=crm).

Given tenant A (its owner's access token, from tests/load/seed.py), this
  1. creates over HTTP, in A: sales users (the owners of the seeded records),
     campaigns with a cost, a client and a deal (which makes the tenant's
     default pipeline) and one lead - the server's own records, read back
     raw from the database as the reference for the stored shape;
  2. signs up tenant B over HTTP;
  3. inserts straight into MongoDB/FerretDB, in the stored shape of
     modules/crm/leads.c and deals.c as tr_db_insert writes it:
       --leads leads in A and as many in B, --clients clients and
       --deals deals in A;
     each generated record is checked against the reference record of its
     collection first: the same fields with the same BSON types (a field the
     reference lacks, like a lost lead's lost_reason, must be one the
     server writes in that state);
  4. prints, one per line, for the shell to read:
       tenant_b=<24 hex>   token_b=<JWT of B's owner>
       from=<RFC 3339>     to=<RFC 3339>   (the reports' period: the
                                            calendar months the data spans)
       seeded_leads_a=N seeded_leads_b=N seeded_deals=N seeded_clients=N
       seed_seconds=S

Records are spread over the BENCH_CRM_MONTHS (default 12) calendar months
before the current one, one created_at per record, in insertion order, so a
list sorted by -created_at has a stable order. Randomness is seeded, so two
runs hold the same data (ids and the dates of the run aside).
"""

import argparse
import datetime
import os
import random
import secrets
import sys
import time

import bson
import pymongo
import requests
from bson.son import SON

STAGES = ("new", "qualified", "proposal", "negotiation", "closing")
CHANNELS = ("web", "phone", "email", "referral", "ads", "event", "partner", "other")
LEAD_STATUS = (("new", 40), ("contacted", 20), ("qualified", 15), ("lost", 25))
DEAL_STATUS = (("open", 40), ("won", 35), ("lost", 25))
BATCH = 2000


def parse_args(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--mongo-uri", required=True)
    p.add_argument("--token", required=True, help="access token of tenant A's owner")
    p.add_argument("--leads", type=int, default=100000, help="leads per tenant")
    p.add_argument("--deals", type=int, default=100000, help="deals in tenant A")
    p.add_argument("--clients", type=int, default=2000, help="clients in tenant A")
    p.add_argument("--owners", type=int, default=8, help="sales users owning the records")
    p.add_argument("--months", type=int, default=int(env("BENCH_CRM_MONTHS", "12")))
    a = p.parse_args(argv)
    if min(a.leads, a.deals, a.clients, a.owners, a.months) < 1:
        p.error("counts must be positive")
    return a


class Api:
    def __init__(self, base, token):
        self.base = base
        self.s = requests.Session()
        self.s.headers["Authorization"] = "Bearer " + token

    def post(self, path, body, want=201):
        r = self.s.post(self.base + path, json=body, timeout=60)
        if r.status_code != want:
            raise RuntimeError(f"POST {path} answered {r.status_code}: {r.text[:300]}")
        return r.json()


def utc(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)


def month_start(d, back):
    """The first instant of the calendar month `back` months before d's."""
    y, m = d.year, d.month - back
    while m < 1:
        y, m = y - 1, m + 12
    while m > 12:
        y, m = y + 1, m - 12
    return datetime.datetime(y, m, 1, tzinfo=datetime.timezone.utc)


def weighted(rng, table):
    x = rng.randrange(sum(w for _, w in table))
    for v, w in table:
        if x < w:
            return v
        x -= w
    return table[-1][0]


def type_name(v):
    """BSON type as pymongo reads it back (SON and dict are both a
    document; Int64 reads back as int)."""
    if isinstance(v, dict):
        return "document"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    return type(v).__name__


def types_of(doc, prefix=""):
    """{field path: type}, into subdocuments and the first array element."""
    out = {}
    for k, v in doc.items():
        out[prefix + k] = type_name(v)
        if isinstance(v, dict):
            out.update(types_of(v, prefix + k + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            out.update(types_of(v[0], prefix + k + ".0."))
    return out


def check_shape(name, generated, reference, optional=()):
    """generated has the reference's fields with the same types; besides
    them only the `optional` fields (ones the server writes in other
    states). None matches anything (a nullable field)."""
    g, r = types_of(generated), types_of(reference)
    missing = sorted(set(r) - set(g))
    extra = sorted(set(g) - set(r) - set(optional))
    wrong = sorted(k for k in set(g) & set(r) if "NoneType" not in (g[k], r[k]) and g[k] != r[k])
    if missing or extra or wrong:
        raise RuntimeError(
            f"generated {name} differs from the one the server stored: missing {missing}, "
            f"extra {extra}, other types {[(k, g[k], r[k]) for k in wrong]}"
        )


def signup(base):
    slug = "bench-b-" + secrets.token_hex(4)
    body = {"tenant_name": "Bench B", "tenant_slug": slug, "email": "owner-b@bench.test",
            "password": "bench-password-" + secrets.token_hex(4), "name": "Bench Owner B"}
    r = requests.post(base + "/v1/signup", json=body, timeout=60)
    if r.status_code != 201:
        raise RuntimeError(f"signup of tenant B answered {r.status_code}: {r.text[:300]}")
    j = r.json()
    return j["tenant"]["id"], j["user"]["id"], j["access_token"]


def lead_doc(rng, i, tag, tenant, owners, campaigns, at):
    status = weighted(rng, LEAD_STATUS)
    phone = f"+49 30 {i:08d}"
    d = SON()
    d["_id"] = bson.ObjectId()
    d["tenant_id"] = tenant
    d["name"] = f"Lead {tag} {i:06d}"
    d["email"] = f"lead{i:06d}.{tag}@example.com"
    d["phone"] = phone
    d["company"] = f"Company {i % 5000:04d}"
    d["owner_id"] = owners[i % len(owners)]
    d["custom"] = SON()
    channel = CHANNELS[rng.randrange(len(CHANNELS))]
    campaign = campaigns[rng.randrange(len(campaigns))] if campaigns and rng.random() < 0.5 else None
    d["source"] = SON([("channel", channel), ("campaign_id", campaign)])
    d["status"] = status
    if status == "lost":
        d["lost_reason"] = "no budget"
    d["_phone_n"] = "".join(ch for ch in phone if ch.isdigit())
    d["duplicate_of"] = None
    d["created_at"] = d["updated_at"] = at
    d["version"] = bson.Int64(1)
    return d


def deal_doc(rng, i, tenant, owners, clients, client_weight, pipeline, lead_ids, created, now_ms):
    status = weighted(rng, DEAL_STATUS)
    owner = owners[i % len(owners)]
    created_ms = int(created.timestamp() * 1000)
    # closed some days after creation, never in the future
    closed_ms = min(created_ms + rng.randrange(1, 60 * 86400_000), now_ms - 60_000)
    closed_ms = max(closed_ms, created_ms)
    end_ms = closed_ms if status != "open" else now_ms - 60_000
    # stage history: from "new" forward, n moves at times within the deal's life
    n = rng.randrange(1, len(STAGES) + 1)
    hist = []
    prev = None
    for k in range(n):
        at = created_ms + (end_ms - created_ms) * k // max(n, 1)
        hist.append(SON([("stage", STAGES[k]), ("from", prev), ("at", utc(at)), ("by", owner)]))
        prev = STAGES[k]
    currency = "EUR" if rng.random() < 0.9 else "USD"
    # amounts skewed per client (a few clients bring most revenue)
    amount = int(rng.randrange(1000, 500000) * client_weight[i % len(clients)])
    d = SON()
    d["_id"] = bson.ObjectId()
    d["tenant_id"] = tenant
    d["client_id"] = clients[i % len(clients)]
    d["title"] = f"Deal {i:06d}"
    d["amount"] = SON([("amount", bson.Int64(amount)), ("currency", currency)])
    d["owner_id"] = owner
    d["custom"] = SON()
    d["status"] = status
    if status != "open":
        d["closed_at"] = utc(closed_ms)
    if status == "lost":
        d["lost_reason"] = "went with a competitor"
    d["pipeline_id"] = pipeline
    d["stage"] = STAGES[n - 1]
    d["stage_history"] = hist
    if lead_ids and rng.random() < 0.3:
        d["lead_id"] = lead_ids[rng.randrange(len(lead_ids))]
    d["created_at"] = d["updated_at"] = created
    d["version"] = bson.Int64(1)
    return d


def insert(coll, docs):
    for k in range(0, len(docs), BATCH):
        r = coll.insert_many(docs[k:k + BATCH], ordered=True)
        if len(r.inserted_ids) != len(docs[k:k + BATCH]):
            raise RuntimeError(f"{coll.name}: inserted {len(r.inserted_ids)} of a batch")


def spread(start, end, n):
    """n distinct millisecond timestamps evenly over [start, end)."""
    a = int(start.timestamp() * 1000)
    span = int(end.timestamp() * 1000) - a
    return [utc(a + span * i // n) for i in range(n)]


def main(argv):
    args = parse_args(argv)
    t0 = time.monotonic()
    rng = random.Random(20261123)
    api = Api(args.base_url, args.token)
    tag = secrets.token_hex(2)

    me = api.s.get(args.base_url + "/v1/me", timeout=30).json()
    tenant_a = bson.ObjectId(me["tenant"]["id"])
    owners = []
    for k in range(args.owners):
        u = api.post("/v1/users", {"email": f"sales{k}.{tag}@bench.test", "name": f"Sales {k}",
                                   "roles": ["sales"], "password": "sales-password-" + secrets.token_hex(4)})
        owners.append(bson.ObjectId(u["id"]))
    campaigns = []
    for k, kind in enumerate(("exhibition", "seminar", "ads", "mailing")):
        c = api.post("/v1/crm/campaigns", {"name": f"Campaign {k}", "kind": kind,
                                           "cost": {"amount": 250000 * (k + 1), "currency": "EUR"}})
        campaigns.append(bson.ObjectId(c["id"]))
    ref_client = api.post("/v1/crm/clients", {"name": "Reference client", "kind": "company",
                                              "owner_id": str(owners[0])})
    ref_deal = api.post("/v1/crm/deals", {"client_id": ref_client["id"], "title": "Reference deal",
                                          "amount": {"amount": 100000, "currency": "EUR"},
                                          "owner_id": str(owners[0])})
    ref_lead = api.post("/v1/crm/leads", {"name": "Reference lead", "email": f"ref.{tag}@example.com",
                                          "phone": "+49 30 555 0100", "company": "Reference GmbH",
                                          "owner_id": str(owners[0]),
                                          "source": {"channel": "event", "campaign_id": str(campaigns[0])}})
    tenant_b, owner_b, token_b = signup(args.base_url)
    tenant_b = bson.ObjectId(tenant_b)

    client = pymongo.MongoClient(args.mongo_uri, serverSelectionTimeoutMS=10000)
    try:
        db = client.get_default_database()
        raw_lead = db.leads.find_one({"_id": bson.ObjectId(ref_lead["id"])})
        raw_deal = db.deals.find_one({"_id": bson.ObjectId(ref_deal["id"])})
        raw_client = db.clients.find_one({"_id": bson.ObjectId(ref_client["id"])})
        if not (raw_lead and raw_deal and raw_client):
            raise RuntimeError("the records created over HTTP are not in the database")
        pipeline = raw_deal["pipeline_id"]

        now = datetime.datetime.now(datetime.timezone.utc)
        now_ms = int(now.timestamp() * 1000)
        start = month_start(now, args.months)
        # up to an hour ago: the records are older than anything made live
        until = now - datetime.timedelta(hours=1)

        # clients: kind alternating, owners round robin; a revenue weight
        # each, heavy-tailed, so ABC has all three classes
        client_ids, client_docs = [], []
        for k, at in enumerate(spread(start, until, args.clients)):
            d = SON()
            d["_id"] = bson.ObjectId()
            d["tenant_id"] = tenant_a
            d["name"] = f"Client {k:05d}"
            d["kind"] = "company" if k % 3 else "person"
            d["owner_id"] = owners[k % len(owners)]
            d["custom"] = SON()
            d["group_ids"] = []
            d["created_at"] = d["updated_at"] = at
            d["version"] = bson.Int64(1)
            client_docs.append(d)
            client_ids.append(d["_id"])
        check_shape("client", client_docs[0], raw_client)
        weight = [1.0 / (1 + k) ** 0.8 * 50 for k in range(len(client_ids))]

        lead_ids_a = []
        leads = {}
        for name, tenant, own in (("a", tenant_a, owners), ("b", tenant_b, [bson.ObjectId(owner_b)])):
            docs = [lead_doc(rng, i, name + tag, tenant, own, campaigns if name == "a" else [], at)
                    for i, at in enumerate(spread(start, until, args.leads))]
            for d in docs[:50]:
                check_shape("lead", d, raw_lead, optional=("lost_reason",))
            leads[name] = docs
            if name == "a":
                lead_ids_a = [d["_id"] for d in docs]

        deals = [deal_doc(rng, i, tenant_a, owners, client_ids, weight, pipeline, lead_ids_a, at, now_ms)
                 for i, at in enumerate(spread(start, until, args.deals))]
        for d in deals[:50]:
            check_shape("deal", d, raw_deal, optional=("closed_at", "lost_reason", "lead_id"))

        t = time.monotonic()
        insert(db.clients, client_docs)
        print(f"seed_crm: {len(client_docs)} clients in {time.monotonic() - t:.1f}s", file=sys.stderr)
        for name in ("a", "b"):
            t = time.monotonic()
            insert(db.leads, leads[name])
            print(f"seed_crm: {len(leads[name])} leads of tenant {name.upper()} in {time.monotonic() - t:.1f}s",
                  file=sys.stderr)
        t = time.monotonic()
        insert(db.deals, deals)
        print(f"seed_crm: {len(deals)} deals in {time.monotonic() - t:.1f}s", file=sys.stderr)
    finally:
        client.close()

    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    print(f"tenant_b={tenant_b}")
    print(f"token_b={token_b}")
    print(f"from={start.strftime(fmt)}")
    print(f"to={month_start(now, -1).strftime(fmt)}")
    print(f"seeded_leads_a={args.leads}")
    print(f"seeded_leads_b={args.leads}")
    print(f"seeded_deals={args.deals}")
    print(f"seeded_clients={args.clients}")
    print(f"seed_seconds={time.monotonic() - t0:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
