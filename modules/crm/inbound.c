/* Inbound sources (CONTRACT.md "Partner gateway"): a URL a partner's form,
 * landing page or ad platform posts JSON to, each post becoming a lead.
 *
 * A source is a resource (/v1/inbound-sources): a name, the channel and
 * campaign its leads are attributed to, a mapping from lead fields to JSON
 * Pointers (RFC 6901) into the posted body, the user who owns its leads
 * (its creator unless named), whether it is active, and optionally a
 * signing secret (write-only, "whsec_<base64>"). Its url carries a token
 * of the source's id and 32 random bytes: the id finds the source without
 * knowing the tenant, the random part makes the url unguessable.
 *
 * POST /v1/inbound/{token} is public. In order: the source (unknown or
 * deleted: 404; paused: 409), its rate limit (a token bucket per source in
 * Redis: 429), the Standard Webhooks signature when it has a secret (401),
 * the mapping (fields it cannot fill: 422), the delivery's webhook-id
 * claimed (see receipts below), and the lead made by POST /v1/crm/leads
 * itself (tr_direct): the same validation, duplicate detection and
 * crm.lead.created event as a user's lead. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "direct.h"
#include "json.h"
#include "kv.h"
#include "log.h"

#define SOURCES "inbound_sources"
#define RECEIPTS "inbound_receipts"
#define TOKEN_RANDOM 32	   /* random bytes of a token */
#define TOKEN_MAX 96	   /* 24 hex of the id + 43 of base64url */
#define POINTER_MAX 500	   /* bytes of one JSON Pointer */
#define SECRET_MIN 16	   /* bytes of a signing secret, decoded */
#define SECRET_MAX 64	   /* the same, at most */
#define WEBHOOK_ID_MAX 200 /* bytes of a webhook-id */
/* A receipt left without its lead this long is a writer that died (a
 * delivery takes milliseconds): the next delivery of its id takes it over. */
#define RECEIPT_STALE_MS 60000

/* The lead fields a mapping may fill (the lead resource's own, leads.c). */
static const char *const mappable[] = {"name", "email", "phone", "company", NULL};

static const char *const kinds[] = {"lead", NULL};
static const char *const channels[] = {"web",	"phone",   "email", "referral", "ads",
				       "event", "partner", "other", NULL};
static const char *const sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"kind", TR_K_ENUM, TR_F_FIXED, 0, 0, kinds, NULL},
    {"channel", TR_K_ENUM, TR_F_REQUIRED | TR_F_FILTER, 0, 0, channels, NULL},
    {"campaign_id", TR_K_REF, TR_F_NULLABLE, 0, 0, NULL, "campaigns"},
    {"mapping", TR_K_OBJECT, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {"owner_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {"active", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    {"signing_secret", TR_K_LINE, TR_F_SECRET | TR_F_NULLABLE, 6, 200, NULL, NULL},
    {"signed", TR_K_BOOL, TR_F_SERVER, 0, 0, NULL, NULL},
    {"url", TR_K_LINE, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* ---- the source ---- */

static bool
is_mappable(const char *field)
{
	for (const char *const *m = mappable; *m; m++)
		if (strcmp(*m, field) == 0)
			return true;
	return false;
}

/* RFC 6901: "" (the whole body) or "/"-separated tokens in which "~" is
 * only ever "~0" or "~1". */
static bool
pointer_ok(const char *p)
{
	if (*p && *p != '/')
		return false;
	for (; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

/* mapping: {"<lead field>": "<JSON Pointer>"}, stored as sent once
 * checked. A source must be able to make a lead: it maps the name, and an
 * email or a phone. */
static bool
mapping_ok(struct tr_ctx *c, bson_t *set)
{
	bson_iter_t it, m;
	bson_t copy;
	bool ok = true;

	if (!bson_iter_init_find(&it, &c->req->body, "mapping") || !BSON_ITER_HOLDS_DOCUMENT(&it))
		return true; /* not changed (the engine refused anything else) */
	bson_iter_recurse(&it, &m);
	while (bson_iter_next(&m)) {
		const char *k = bson_iter_key(&m);
		if (!is_mappable(k)) {
			tr_problem_field(c, "mapping",
					 "maps only the lead's name, email, phone and company");
			ok = false;
		} else if (!BSON_ITER_HOLDS_UTF8(&m) ||
			   strlen(bson_iter_utf8(&m, NULL)) > POINTER_MAX ||
			   !pointer_ok(bson_iter_utf8(&m, NULL))) {
			char *f = tr_arena_alloc(c->req->arena, 32);
			snprintf(f, 32, "mapping.%s", k);
			tr_problem_field(c, f,
					 "must be a JSON Pointer (\"/contact/email\", RFC 6901)");
			ok = false;
		}
	}
	if (!ok)
		return false;
	bson_iter_recurse(&it, &m);
	if (!bson_iter_find(&m, "name") ||
	    (bson_iter_recurse(&it, &m),
	     !bson_iter_find(&m, "email") &&
		 (bson_iter_recurse(&it, &m), !bson_iter_find(&m, "phone")))) {
		tr_problem_field(c, "mapping", "must map name, and email or phone");
		return false;
	}
	bson_iter_recurse(&it, &m);
	tr_doc_remove(set, "mapping");
	BSON_APPEND_DOCUMENT_BEGIN(set, "mapping", &copy);
	while (bson_iter_next(&m))
		BSON_APPEND_UTF8(&copy, bson_iter_key(&m), bson_iter_utf8(&m, NULL));
	bson_append_document_end(set, &copy);
	return true;
}

/* The secret's bytes from "whsec_<base64>" (padded or not); false when it
 * is not one. */
static bool
secret_bytes(const char *secret, unsigned char *out, size_t *len)
{
	const char *b64 = secret + 6;
	size_t n = 0;

	if (strncmp(secret, "whsec_", 6) != 0)
		return false;
	if (sodium_base642bin(out, SECRET_MAX, b64, strlen(b64), NULL, &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 &&
	    sodium_base642bin(out, SECRET_MAX, b64, strlen(b64), NULL, &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0)
		return false;
	*len = n;
	return n >= SECRET_MIN && n <= SECRET_MAX;
}

/* signing_secret: a string sets the secret (kept as _secret, never shown),
 * null removes it; "signed" tells which. */
static bool
secret_ok(struct tr_ctx *c, bson_t *set)
{
	unsigned char raw[SECRET_MAX];
	size_t n;
	bson_iter_t it;

	if (!bson_iter_init_find(&it, set, "signing_secret"))
		return true;
	if (BSON_ITER_HOLDS_NULL(&it)) {
		BSON_APPEND_NULL(set, "_secret");
		BSON_APPEND_BOOL(set, "signed", false);
		return true;
	}
	if (!BSON_ITER_HOLDS_UTF8(&it) || !secret_bytes(bson_iter_utf8(&it, NULL), raw, &n)) {
		tr_problem_field(c, "signing_secret",
				 "must be \"whsec_\" and the base64 of 16 to 64 bytes");
		return false;
	}
	sodium_memzero(raw, sizeof(raw));
	/* a copy: set moves as it grows */
	BSON_APPEND_UTF8(set, "_secret", tr_arena_strdup(c->req->arena, bson_iter_utf8(&it, NULL)));
	BSON_APPEND_BOOL(set, "signed", true);
	return true;
}

/* A new source is active, makes leads, is owned by someone (an API key has
 * no user: it names the owner) and gets its id and url here. */
static bool
source_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	unsigned char raw[TOKEN_RANDOM];
	char hex[25], *random, *token, *url;
	bson_oid_t id;
	(void)e;

	if (!mapping_ok(c, set) || !secret_ok(c, set))
		return false;
	if (old)
		return true;
	if (!bson_has_field(set, "owner_id")) {
		tr_problem_field(c, "owner_id", "an API key must name the user who owns the leads");
		return false;
	}
	if (!bson_has_field(set, "kind"))
		BSON_APPEND_UTF8(set, "kind", "lead");
	if (!bson_has_field(set, "active"))
		BSON_APPEND_BOOL(set, "active", true);
	if (!bson_has_field(set, "signed"))
		BSON_APPEND_BOOL(set, "signed", false);
	if (!bson_has_field(set, "campaign_id"))
		BSON_APPEND_NULL(set, "campaign_id");
	bson_oid_init(&id, NULL);
	bson_oid_to_string(&id, hex);
	randombytes_buf(raw, sizeof(raw));
	random = tr_b64url_encode(raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	if (!random) {
		tr_problem_from_err(c, TR_ENOMEM);
		return false;
	}
	token = tr_arena_alloc(c->req->arena, TOKEN_MAX);
	url = tr_arena_alloc(c->req->arena, TOKEN_MAX + 16);
	snprintf(token, TOKEN_MAX, "%s%s", hex, random);
	snprintf(url, TOKEN_MAX + 16, "/v1/inbound/%s", token);
	sodium_memzero(random, strlen(random));
	free(random);
	BSON_APPEND_OID(set, "_id", &id);
	BSON_APPEND_UTF8(set, "_token", token);
	BSON_APPEND_UTF8(set, "url", url);
	return true;
}

const struct tr_resource crm_inbound_sources = {
    .name = "inbound_source",
    .coll = SOURCES,
    .path = "/v1/inbound-sources",
    .read = "crm.leads.read",
    .write = "crm.settings.write",
    .about = "A URL partners post JSON to, each post a lead: mapped by JSON Pointers, "
	     "attributed to the source's channel and campaign, owned by its owner, and "
	     "signed with Standard Webhooks headers when it has a signing_secret "
	     "(write-only).",
    .owner_field = "owner_id",
    .fields = fields,
    .sorts = sorts,
    .hook = source_hook,
    .deletable = true,
};

/* ---- receiving ---- */

/* The source a token names: the first 24 characters are its id, the whole
 * token must equal the stored one (compared in constant time). Points db
 * at the source's tenant. TR_ENOTFOUND for any token that is not one. */
static int
find_source(struct tr_db *db, const char *token, bson_t *source)
{
	bson_t filter = BSON_INITIALIZER;
	char id[25];
	bson_oid_t oid, tenant;
	const char *stored;
	int rc;

	bson_init(source);
	if (strlen(token) >= TOKEN_MAX || strlen(token) <= 24)
		return TR_ENOTFOUND;
	memcpy(id, token, 24);
	id[24] = '\0';
	if (!tr_is_object_id(id))
		return TR_ENOTFOUND;
	bson_oid_init_from_string(&oid, id);
	BSON_APPEND_OID(&filter, "_id", &oid);
	bson_destroy(source);
	rc = tr_db_find_global(db, SOURCES, &filter, source);
	bson_destroy(&filter);
	if (rc != TR_OK)
		return rc;
	stored = tr_doc_str(source, "_token");
	if (!stored || strlen(stored) != strlen(token) ||
	    sodium_memcmp(stored, token, strlen(token)) != 0 ||
	    !tr_doc_oid(source, "tenant_id", &tenant))
		return TR_ENOTFOUND;
	tr_db_set_tenant(db, &tenant);
	return TR_OK;
}

/* A token bucket per source (tr_kv_rate_take); 429 with Retry-After, or
 * 503, when it cannot take one. */
static bool
rate_ok(struct tr_ctx *c, const char *tenant_hex, const char *source_hex)
{
	char bucket[96];
	long long wait = 0;

	snprintf(bucket, sizeof(bucket), "t:{%s}:rl:inbound:%s", tenant_hex, source_hex);
	if (tr_kv_rate_take(bucket, tr_config_int("inbound_rate_rps"),
			    tr_config_int("inbound_rate_burst"), &wait) != TR_OK) {
		tr_problem_from_err(c, TR_EUNAVAILABLE);
		return false;
	}
	if (wait > 0) {
		tr_problem(c, 429, "rate-limited", "too many requests for this source; slow down");
		c->resp->retry_after = (int)((wait + 999) / 1000);
		return false;
	}
	return true;
}

/* Standard Webhooks: webhook-signature holds space-separated "v1,<base64
 * HMAC-SHA256(secret bytes, "<id>.<timestamp>.<body>")>"; one must match,
 * and the timestamp be within inbound_tolerance_s of now. */
static bool
signature_ok(struct tr_ctx *c, const char *secret)
{
	const struct tr_req *r = c->req;
	unsigned char key[SECRET_MAX], mac[crypto_auth_hmacsha256_BYTES];
	char expect[sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES,
					      sodium_base64_VARIANT_ORIGINAL)];
	crypto_auth_hmacsha256_state st;
	size_t keylen = 0, elen;
	long long ts;
	bool match = false;

	if (!r->webhook_id || !r->webhook_timestamp || !r->webhook_signature) {
		tr_problem(c, 401, "unauthorized",
			   "this source takes signed requests: send webhook-id, "
			   "webhook-timestamp and webhook-signature");
		return false;
	}
	if (tr_parse_int(r->webhook_timestamp, 0, 99999999999LL, &ts) != 0 ||
	    llabs(ts - tr_now_ms() / 1000) > tr_config_int("inbound_tolerance_s")) {
		tr_problem(c, 401, "unauthorized",
			   "webhook-timestamp is not a time close enough to now");
		return false;
	}
	if (!secret_bytes(secret, key, &keylen)) {
		tr_problem(c, 500, "internal", "the source's signing secret is unreadable");
		return false;
	}
	crypto_auth_hmacsha256_init(&st, key, keylen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)r->webhook_id,
				      strlen(r->webhook_id));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)r->webhook_timestamp,
				      strlen(r->webhook_timestamp));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)(r->raw_body ? r->raw_body : ""),
				      r->raw_body_len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(key, sizeof(key));
	sodium_bin2base64(expect, sizeof(expect), mac, sizeof(mac), sodium_base64_VARIANT_ORIGINAL);
	elen = strlen(expect);
	for (const char *p = r->webhook_signature; *p;) {
		size_t n = strcspn(p, " ");
		if (n == elen + 3 && strncmp(p, "v1,", 3) == 0 &&
		    sodium_memcmp(p + 3, expect, elen) == 0)
			match = true;
		p += n;
		while (*p == ' ')
			p++;
	}
	if (!match)
		tr_problem(c, 401, "unauthorized", "webhook-signature does not match the body");
	return match;
}

/* Finds the value a JSON Pointer names in doc into *out; false when the
 * body has nothing there (a member missing, an array index out of range
 * or written with a leading zero, a step into a value that is not an
 * object or an array). "" names the whole body, which is no lead field. */
static bool
pointer_find(const bson_t *doc, const char *pointer, bson_iter_t *out)
{
	char token[POINTER_MAX + 1];
	bson_iter_t it;
	const char *p = pointer;
	bool first = true;

	if (!*p)
		return false;
	while (*p == '/') {
		size_t n = 0;
		for (p++; *p && *p != '/'; p++) {
			if (*p == '~')
				token[n++] = *++p == '1' ? '/' : '~';
			else
				token[n++] = *p;
		}
		token[n] = '\0';
		if (first) {
			if (!bson_iter_init(&it, doc))
				return false;
			first = false;
		} else {
			bson_iter_t parent = it;
			if (BSON_ITER_HOLDS_ARRAY(&parent) &&
			    (n == 0 || (token[0] == '0' && n > 1) ||
			     strspn(token, "0123456789") != n))
				return false;
			if (!(BSON_ITER_HOLDS_DOCUMENT(&parent) ||
			      BSON_ITER_HOLDS_ARRAY(&parent)) ||
			    !bson_iter_recurse(&parent, &it))
				return false;
		}
		bool found = false;
		while (!found && bson_iter_next(&it))
			found = strcmp(bson_iter_key(&it), token) == 0;
		if (!found)
			return false;
	}
	*out = it;
	return true;
}

/* A lead field the body could not fill, and why (in the request's arena). */
struct named {
	const char *field, *message;
	struct named *next;
};

/* Is field among the names of list? */

static bool
named(const struct named *list, const char *field)
{
	for (; list; list = list->next)
		if (strcmp(list->field, field) == 0)
			return true;
	return false;
}

/* The lead the body maps to: each mapped field's value (a string; an
 * integer, such as a phone number, as its digits), and the source's
 * channel and campaign. Fields the body has nothing for are listed in
 * *missing (a lead may do without some of them). */
static void
map_lead(struct tr_ctx *c, const bson_t *source, bson_t *lead, struct named **missing)
{
	bson_iter_t it, m, v;
	bson_t src;
	bson_oid_t campaign;
	char num[32];

	if (bson_iter_init_find(&it, source, "mapping") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &m))
		while (bson_iter_next(&m)) {
			const char *field = bson_iter_key(&m), *why = NULL;
			const char *ptr = BSON_ITER_HOLDS_UTF8(&m) ? bson_iter_utf8(&m, NULL) : "";
			if (!pointer_find(&c->req->body, ptr, &v) || BSON_ITER_HOLDS_NULL(&v))
				why = "the body has no value at %s";
			else if (BSON_ITER_HOLDS_UTF8(&v))
				BSON_APPEND_UTF8(lead, field, bson_iter_utf8(&v, NULL));
			else if (BSON_ITER_HOLDS_INT32(&v) || BSON_ITER_HOLDS_INT64(&v)) {
				snprintf(num, sizeof(num), "%lld",
					 (long long)bson_iter_as_int64(&v));
				BSON_APPEND_UTF8(lead, field, num);
			} else
				why = "the body's value at %s is not a string";
			if (why) {
				size_t len = strlen(why) + strlen(ptr) + 1;
				char *msg = tr_arena_alloc(c->req->arena, len);
				struct named *n = tr_arena_alloc(c->req->arena, sizeof(*n));
				snprintf(msg, len, why, ptr);
				n->field = tr_arena_strdup(c->req->arena, field);
				n->message = msg;
				n->next = *missing;
				*missing = n;
			}
		}
	BSON_APPEND_DOCUMENT_BEGIN(lead, "source", &src);
	BSON_APPEND_UTF8(&src, "channel", tr_doc_str(source, "channel"));
	if (tr_doc_oid(source, "campaign_id", &campaign)) {
		char hex[25];
		bson_oid_to_string(&campaign, hex);
		BSON_APPEND_UTF8(&src, "campaign_id", hex);
	} else {
		BSON_APPEND_NULL(&src, "campaign_id");
	}
	bson_append_document_end(lead, &src);
}

/* Receipts: one record per (source, webhook-id), its _id derived from
 * both, so that of deliveries of the same id - in any process, at once or
 * later - exactly one inserts it (the unique _id is what FerretDB makes
 * atomic). It names the lead once made. A delivery that fails removes its
 * receipt, so the sender's retry is served; one whose process died leaves
 * it without a lead, and it is taken over after RECEIPT_STALE_MS.
 *
 * Claims the receipt for this delivery: TR_OK (claimed: id in hex),
 * TR_EDUPLICATE (received before: *earlier is that receipt), or another
 * code. */
static int
claim_receipt(struct tr_db *db, const char *source_hex, const char *webhook_id, char hex[25],
	      bson_t *earlier)
{
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_state st;
	bson_t doc = BSON_INITIALIZER, stored;
	bson_oid_t id;
	int rc = TR_EINTERNAL;

	bson_init(earlier);
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)source_hex, 24);
	crypto_hash_sha256_update(&st, (const unsigned char *)":", 1);
	crypto_hash_sha256_update(&st, (const unsigned char *)webhook_id, strlen(webhook_id));
	crypto_hash_sha256_final(&st, digest);
	bson_oid_init_from_data(&id, digest);
	bson_oid_to_string(&id, hex);
	BSON_APPEND_OID(&doc, "_id", &id);
	BSON_APPEND_UTF8(&doc, "source_id", source_hex);
	BSON_APPEND_UTF8(&doc, "webhook_id", webhook_id);
	BSON_APPEND_NULL(&doc, "lead_id");
	for (int attempt = 0; attempt < 2; attempt++) {
		rc = tr_db_insert(db, RECEIPTS, &doc, &stored);
		bson_destroy(&stored);
		if (rc != TR_EDUPLICATE)
			break;
		bson_destroy(earlier);
		rc = tr_db_get(db, RECEIPTS, hex, earlier);
		if (rc == TR_ENOTFOUND) /* its delivery failed meanwhile */
			continue;
		if (rc != TR_OK)
			break;
		rc = TR_EDUPLICATE;
		bson_iter_t it;
		bool has_lead = bson_iter_init_find(&it, earlier, "lead_id") &&
				(BSON_ITER_HOLDS_UTF8(&it) || BSON_ITER_HOLDS_OID(&it));
		int64_t created = bson_iter_init_find(&it, earlier, "created_at") &&
					  BSON_ITER_HOLDS_DATE_TIME(&it)
				      ? bson_iter_date_time(&it)
				      : 0;
		if (has_lead || tr_now_ms() - created < RECEIPT_STALE_MS)
			break;
		/* a writer died with it: the first to remove it takes over */
		if (tr_db_delete(db, RECEIPTS, hex, tr_doc_int(earlier, "version", 0)) != TR_OK)
			break;
	}
	bson_destroy(&doc);
	return rc;
}

/* A 422 naming the lead fields the body could not fill and those POST
 * /v1/crm/leads found invalid. */
static void
refuse_lead(struct tr_ctx *c, const bson_t *answer, const struct named *missing)
{
	bson_iter_t it, errs;

	tr_problem(c, 422, "validation-failed", "the body maps to no valid lead");
	for (const struct named *n = missing; n; n = n->next)
		tr_problem_field(c, n->field, n->message);

	if (bson_iter_init_find(&it, answer, "errors") && bson_iter_recurse(&it, &errs))
		while (bson_iter_next(&errs)) {
			bson_t item;
			const char *field, *message;
			uint32_t len;
			const uint8_t *data;
			if (!BSON_ITER_HOLDS_DOCUMENT(&errs))
				continue;
			bson_iter_document(&errs, &len, &data);
			if (!bson_init_static(&item, data, len))
				continue;
			field = tr_doc_str(&item, "field");
			message = tr_doc_str(&item, "message");
			if (field && !named(missing, field))
				tr_problem_field(
				    c, tr_arena_strdup(c->req->arena, field),
				    tr_arena_strdup(c->req->arena, message ? message : "invalid"));
		}
}

/* POST /v1/inbound/{token}: see the top of the file. 202 {"lead_id",
 * "duplicate_of"} for a lead made; 200 with "replayed": true for a
 * webhook-id received before (nothing made). */
void
crm_inbound_receive(struct tr_ctx *c)
{
	bson_t source = BSON_INITIALIZER, lead = BSON_INITIALIZER, answer = BSON_INITIALIZER;
	bson_t earlier = BSON_INITIALIZER, out = BSON_INITIALIZER, set = BSON_INITIALIZER;
	bson_t stored = BSON_INITIALIZER;
	struct named *missing = NULL;
	char source_hex[25], tenant_hex[25], receipt[25] = "";
	const char *secret, *wid = c->req->webhook_id, *lead_id;
	bson_oid_t source_id, tenant, owner;
	bson_iter_t it;
	int rc, status;

	bson_destroy(&source);
	rc = find_source(c->db, tr_param(c, 0), &source);
	if (rc == TR_ENOTFOUND) {
		tr_problem(c, 404, "not-found", "no such inbound source");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_doc_oid(&source, "_id", &source_id);
	tr_doc_oid(&source, "tenant_id", &tenant);
	bson_oid_to_string(&source_id, source_hex);
	bson_oid_to_string(&tenant, tenant_hex);
	if (bson_iter_init_find(&it, &source, "active") && BSON_ITER_HOLDS_BOOL(&it) &&
	    !bson_iter_bool(&it)) {
		tr_problem(c, 409, "conflict", "this inbound source is paused");
		goto out;
	}
	if (!rate_ok(c, tenant_hex, source_hex))
		goto out;
	secret = tr_doc_str(&source, "_secret");
	if (secret && !signature_ok(c, secret))
		goto out;
	if (wid && (strlen(wid) > WEBHOOK_ID_MAX || !*wid)) {
		tr_problem(c, 400, "malformed-request", "webhook-id must be 1 to 200 bytes");
		goto out;
	}
	if (!tr_doc_oid(&source, "owner_id", &owner)) {
		tr_problem(c, 409, "conflict", "this inbound source has no owner for its leads");
		goto out;
	}
	map_lead(c, &source, &lead, &missing);
	if (wid) {
		bson_destroy(&earlier);
		rc = claim_receipt(c->db, source_hex, wid, receipt, &earlier);
		if (rc == TR_EDUPLICATE) {
			if (!bson_iter_init_find(&it, &earlier, "lead_id") ||
			    !BSON_ITER_HOLDS_UTF8(&it)) {
				tr_problem(c, 409, "conflict",
					   "this webhook-id is being received now; retry shortly");
				c->resp->retry_after = 1;
				goto out;
			}
			BSON_APPEND_UTF8(&out, "lead_id", bson_iter_utf8(&it, NULL));
			BSON_APPEND_BOOL(&out, "replayed", true);
			tr_reply_json(c, 200, &out);
			goto out;
		}
		if (rc != TR_OK) {
			tr_problem_from_err(c, rc);
			goto out;
		}
	}
	status = tr_direct(c->db, &tenant, &owner, "POST /v1/crm/leads", NULL, &lead, NULL, true,
			   &answer);
	lead_id = status == 201 ? tr_doc_str(&answer, "id") : NULL;
	if (!lead_id) {
		if (*receipt)
			tr_db_delete(c->db, RECEIPTS, receipt, -1);
		if (status == 422) {
			refuse_lead(c, &answer, missing);
		} else {
			const char *type = tr_doc_str(&answer, "type");
			const char *detail = tr_doc_str(&answer, "detail");
			tr_problem(
			    c, status > 0 ? status : 500,
			    tr_arena_strdup(c->req->arena, type && *type ? type : "internal"),
			    tr_arena_strdup(c->req->arena,
					    detail && *detail ? detail : "no lead was made"));
			if (status == 503)
				c->resp->retry_after = 1;
		}
		goto out;
	}
	if (*receipt) {
		BSON_APPEND_UTF8(&set, "lead_id", lead_id);
		if (tr_db_update(c->db, RECEIPTS, receipt, -1, &set, NULL, &stored) != TR_OK)
			tr_warn("crm: inbound receipt %s does not name its lead %s", receipt,
				lead_id);
	}
	BSON_APPEND_UTF8(&out, "lead_id", lead_id);
	if (bson_iter_init_find(&it, &answer, "duplicate_of"))
		bson_append_iter(&out, "duplicate_of", -1, &it);
	tr_reply_json(c, 202, &out);
out:
	bson_destroy(&source);
	bson_destroy(&lead);
	bson_destroy(&answer);
	bson_destroy(&earlier);
	bson_destroy(&out);
	bson_destroy(&set);
	bson_destroy(&stored);
}
