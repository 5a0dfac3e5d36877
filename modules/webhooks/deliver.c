/* Delivery of one event to one webhook (job thread). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "events.h"
#include "json.h"
#include "resource.h"
#include "log.h"
#include "util.h"
#include "webhooks.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_start(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The webhook as stored, if it still exists for the job's tenant: TR_OK,
 * TR_ENOTFOUND when it was removed (no delivery), or the data layer's
 * error when it could not be read (the job is retried: a database outage
 * must not drop deliveries). hook is initialised either way. */
static int
load_hook(struct tr_db *db, const char *id, bson_t *hook)
{
	if (!db) {
		bson_init(hook);
		return TR_ENOMEM;
	}
	return tr_db_get(db, WEBHOOKS, id, hook); /* initialises hook */
}

/* Resolves the URL's host once and checks every address, so that a name
 * cannot lead a delivery into the private network; the connection then
 * goes to the address checked. Returns a curl "host:port:addr" pin. */
static bool
resolve_pin(const char *url, char *pin, size_t plen, char *err, size_t errlen)
{
	const char *host = strstr(url, "://") + 3;
	size_t hlen = strcspn(host, ":/?#");
	char name[256], port[8];
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	char addr[INET6_ADDRSTRLEN];

	if (hlen == 0 || hlen >= sizeof(name)) {
		snprintf(err, errlen, "bad url");
		return false;
	}
	memcpy(name, host, hlen);
	name[hlen] = '\0';
	if (host[hlen] == ':')
		snprintf(port, sizeof(port), "%d", atoi(host + hlen + 1));
	else
		snprintf(port, sizeof(port), "%s", strncmp(url, "https", 5) == 0 ? "443" : "80");
	if (getaddrinfo(name, port, &hints, &res) != 0) {
		snprintf(err, errlen, "cannot resolve %s", name);
		return false;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		if (!tr_config_int("webhook_allow_private") &&
		    webhooks_address_blocked(ai->ai_addr)) {
			freeaddrinfo(res);
			snprintf(err, errlen, "%s resolves to a private address", name);
			return false;
		}
	}
	ai = res;
	if (ai->ai_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr,
			  sizeof(addr));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr,
			  sizeof(addr));
	snprintf(pin, plen, ai->ai_family == AF_INET6 ? "%s:%s:[%s]" : "%s:%s:%s", name, port,
		 addr);
	freeaddrinfo(res);
	return true;
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* One attempt of one delivery, as the log records it. */
struct attempt {
	char hook[25];
	char event_id[64];
	char msg_id[WEBHOOKS_MSGID_MAX];
	const char *status; /* delivered, pending, failed, skipped */
	long response_code;
	int64_t at_ms, duration_ms, next_ms;
	int32_t rounds; /* times the job was retried by hand (TR_JOB_RETRIED) */
	const char *body;
	size_t blen;
};

/* The id of an attempt's log record, derived from its chain (the job),
 * the round (a dead job retried by hand counts its attempts again) and
 * its number: a job runs an attempt again when the process that ran it
 * died before saying so (the queue reclaims it, same number), and the
 * record of the first run then refuses the second's. */
static void
attempt_record_id(const struct tr_job *job, int32_t rounds, bson_oid_t *oid)
{
	unsigned char h[12];
	char salt[32];
	crypto_generichash_state st;
	int n = rounds > 0 ? snprintf(salt, sizeof(salt), ":%d:r%d", job->attempt, (int)rounds)
			   : snprintf(salt, sizeof(salt), ":%d", job->attempt);

	crypto_generichash_init(&st, (const unsigned char *)"webhook-attempt", 15, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)job->id, strlen(job->id));
	crypto_generichash_update(&st, (const unsigned char *)salt, (size_t)n);
	crypto_generichash_final(&st, h, sizeof(h));
	bson_oid_init_from_data(oid, h);
}

/* The attempt into the delivery log, once per (chain, attempt). A log
 * that cannot be written costs the record, not the delivery (logged). */
static void
log_attempt(struct tr_db *db, const struct tr_job *job, const struct attempt *a, const char *err)
{
	bson_t rec = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bson_oid_t oid;
	int rc;

	attempt_record_id(job, a->rounds, &oid);
	BSON_APPEND_OID(&rec, "_id", &oid);
	BSON_APPEND_UTF8(&rec, "webhook_id", a->hook);
	BSON_APPEND_UTF8(&rec, "event_id", a->event_id);
	BSON_APPEND_UTF8(&rec, "message_id", a->msg_id);
	BSON_APPEND_UTF8(&rec, "chain_id", job->id);
	BSON_APPEND_INT32(&rec, "attempt", job->attempt);
	BSON_APPEND_DATE_TIME(&rec, "attempted_at", a->at_ms);
	BSON_APPEND_UTF8(&rec, "status", a->status);
	if (a->response_code > 0)
		BSON_APPEND_INT32(&rec, "response_code", (int32_t)a->response_code);
	else
		BSON_APPEND_NULL(&rec, "response_code");
	BSON_APPEND_INT64(&rec, "duration_ms", a->duration_ms);
	if (err && *err)
		BSON_APPEND_UTF8(&rec, "error", err);
	else
		BSON_APPEND_NULL(&rec, "error");
	if (a->next_ms > 0)
		BSON_APPEND_DATE_TIME(&rec, "next_attempt_at", a->next_ms);
	else
		BSON_APPEND_NULL(&rec, "next_attempt_at");
	/* the event as sent, for replays of this delivery */
	bson_append_utf8(&rec, "_event", -1, a->body, (int)a->blen);
	rc = tr_db_insert(db, WEBHOOK_DELIVERIES, &rec, &stored);
	if (rc == TR_EDUPLICATE)
		tr_info("webhooks: attempt %d of %s ran again; its first run's record stays",
			job->attempt, job->id);
	else if (rc != TR_OK)
		tr_warn("webhooks: attempt %d of %s not logged: %s", job->attempt, job->id,
			tr_strerror(rc));
	bson_destroy(&rec);
	bson_destroy(&stored);
}

/* Continuous failure: the first failure after a success marks the webhook
 * failing_since; a failure webhook_disable_after_ms after that pauses it
 * (active false, disabled_at) and emits system.webhook.disabled. The
 * pause is written on the version read, so of attempts that fail at once
 * in several processes one disables it and one event says so. Any
 * success clears the mark. */
static void
track_health(struct tr_db *db, const struct tr_job *job, const char *id, const bson_t *hook,
	     bool ok)
{
	bson_t set = BSON_INITIALIZER, out = BSON_INITIALIZER;
	bson_iter_t it;
	int64_t since = 0, now = tr_now_ms();
	int rc = TR_OK;

	if (bson_iter_init_find(&it, hook, "failing_since") && BSON_ITER_HOLDS_DATE_TIME(&it))
		since = bson_iter_date_time(&it);
	if (ok && since) {
		BSON_APPEND_NULL(&set, "failing_since");
		rc = tr_db_update(db, WEBHOOKS, id, 0, &set, NULL, &out);
	} else if (!ok && !since) {
		BSON_APPEND_DATE_TIME(&set, "failing_since", now);
		rc = tr_db_update(db, WEBHOOKS, id, 0, &set, NULL, &out);
	} else if (!ok && now - since >= tr_config_int("webhook_disable_after_ms")) {
		BSON_APPEND_BOOL(&set, "active", false);
		BSON_APPEND_DATE_TIME(&set, "disabled_at", now);
		rc = tr_db_update(db, WEBHOOKS, id, tr_doc_int(hook, "version", 0), &set, NULL,
				  &out);
		if (rc == TR_OK) {
			bson_t data = BSON_INITIALIZER;
			tr_render_resource(&out, &data);
			rc = tr_emit_background(job->tenant, WEBHOOKS_TOPIC,
						"system.webhook.disabled", id, NULL, &data);
			bson_destroy(&data);
			tr_info("webhooks: %s of tenant %s disabled after failing since %lld", id,
				job->tenant, (long long)since);
		} else if (rc == TR_EVERSION || rc == TR_EBUSY) {
			rc = TR_OK; /* another attempt changed it first */
		}
	}
	if (rc != TR_OK)
		tr_warn("webhooks: the health of %s not recorded: %s", id, tr_strerror(rc));
	bson_destroy(&set);
	bson_destroy(&out);
}

/* The previous secret while a rotation's overlap lasts, else NULL. */
static const char *
overlap_secret(const bson_t *hook)
{
	const char *prev = tr_doc_str(hook, "_secret_prev");
	bson_iter_t it;

	if (!prev || !bson_iter_init_find(&it, hook, "_secret_prev_until") ||
	    !BSON_ITER_HOLDS_DATE_TIME(&it) || bson_iter_date_time(&it) <= tr_now_ms())
		return NULL;
	return prev;
}

/* The deprecated header's MAC with secret, in hex, into out (65 bytes). */
static void
legacy_mac(const char *secret, long now, const struct attempt *a, char *out)
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char head[32];
	crypto_auth_hmacsha256_state st;
	int hn = snprintf(head, sizeof(head), "%ld.", now);

	crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)head, (size_t)hn);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)a->body, a->blen);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(out, 2 * sizeof(mac) + 1, mac, sizeof(mac));
}

/* The webhook-signature header's value: the current secret's signature,
 * then, while a rotation's overlap lasts, the previous secret's. */
static void
signatures(const bson_t *hook, const struct attempt *a, long ts, char *out, size_t olen)
{
	const char *secret = tr_doc_str(hook, "_secret");
	const char *prev = overlap_secret(hook);
	size_t n;

	out[0] = '\0';
	if (secret && webhooks_sign(secret, a->msg_id, ts, a->body, a->blen, out, olen) != 0)
		out[0] = '\0';
	if (!prev)
		return;
	n = strlen(out);
	if (n && n + 2 < olen) {
		out[n++] = ' ';
		out[n] = '\0';
	}
	if (webhooks_sign(prev, a->msg_id, ts, a->body, a->blen, out + n, olen - n) != 0)
		out[n ? n - 1 : 0] = '\0';
}

/* POSTs the body to url; 0 on a 2xx answer, else -1 with the reason. */
static int
post(const struct tr_job *job, const bson_t *hook, struct attempt *a, char *err, size_t errlen)
{
	const char *url = tr_doc_str(hook, "url"), *legacy = tr_doc_str(hook, "_secret");
	char header[512], pin[600], sig[256];
	int rc = -1;

	if (!url || !legacy) {
		snprintf(err, errlen, "the webhook has no url or secret");
		return -1;
	}
	if (!resolve_pin(url, pin, sizeof(pin), err, errlen))
		return -1;

	long now = (long)time(NULL);
	signatures(hook, a, now, sig, sizeof(sig));

	/* The X-Trellis-Signature of before (deprecated): v1= the hex
	 * HMAC-SHA256 of "<unix time>.<body>" keyed with the secret's text,
	 * and during a rotation's overlap a second v1= with the previous. */
	char mac_hex[2 * (2 * crypto_auth_hmacsha256_BYTES + 1) + 4];
	const char *prev = overlap_secret(hook);
	legacy_mac(legacy, now, a, mac_hex);
	if (prev) {
		size_t k = strlen(mac_hex);
		memcpy(mac_hex + k, ",v1=", 4);
		legacy_mac(prev, now, a, mac_hex + k + 4);
	}

	CURL *curl = curl_easy_init();
	struct curl_slist *headers = NULL, *resolve = NULL;
	if (!curl) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "User-Agent: Trellis-Webhooks/1");
	snprintf(header, sizeof(header), "webhook-id: %s", a->msg_id);
	headers = curl_slist_append(headers, header);
	snprintf(header, sizeof(header), "webhook-timestamp: %ld", now);
	headers = curl_slist_append(headers, header);
	snprintf(header, sizeof(header), "webhook-signature: %s", sig);
	headers = curl_slist_append(headers, header);
	snprintf(header, sizeof(header), "X-Trellis-Delivery: %s", job->id);
	headers = curl_slist_append(headers, header);
	snprintf(header, sizeof(header), "X-Trellis-Signature: t=%ld,v1=%s", now, mac_hex);
	headers = curl_slist_append(headers, header);
	resolve = curl_slist_append(resolve, pin);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, a->body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)a->blen);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, tr_config_int("webhook_timeout_ms"));
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	CURLcode cc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a->response_code);
	if (cc != CURLE_OK)
		snprintf(err, errlen, "%s", curl_easy_strerror(cc));
	else if (a->response_code < 200 || a->response_code > 299)
		snprintf(err, errlen, "the endpoint answered HTTP %ld", a->response_code);
	else
		rc = 0;
	curl_slist_free_all(headers);
	curl_slist_free_all(resolve);
	curl_easy_cleanup(curl);
	sodium_memzero(sig, sizeof(sig));
	return rc;
}

/* A delivery job: {"webhook_id", "event": {...}}, enqueued by the event
 * sink with the event, or by a replay. Every attempt goes to the log; a
 * paused webhook's is logged as skipped and is done. */
int
webhooks_deliver(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload, event, hook = BSON_INITIALIZER;
	bson_iter_t it;
	char perr[64];
	char *body = NULL;
	struct attempt a = {.status = "failed"};
	struct tr_db *db = NULL;
	int rc = -1, found;

	pthread_once(&curl_once, curl_start);
	if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) != 0 ||
	    !bson_iter_init_find(&it, &payload, "webhook_id") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    !tr_is_object_id(bson_iter_utf8(&it, NULL))) {
		bson_destroy(&payload);
		bson_destroy(&hook);
		return 0; /* not a delivery: nothing to do, ever */
	}
	snprintf(a.hook, sizeof(a.hook), "%s", bson_iter_utf8(&it, NULL));
	if (bson_iter_init_find(&it, &payload, TR_JOB_RETRIED) && BSON_ITER_HOLDS_INT32(&it))
		a.rounds = bson_iter_int32(&it);
	if (bson_iter_init_find(&it, &payload, "event") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		uint32_t len;
		const uint8_t *data;
		bson_iter_document(&it, &len, &data);
		if (bson_init_static(&event, data, len)) {
			body = tr_json_render(&event, &a.blen);
			const char *eid = tr_doc_str(&event, "id");
			snprintf(a.event_id, sizeof(a.event_id), "%s", eid ? eid : "");
		}
	}
	bson_destroy(&payload);
	if (!body) {
		bson_destroy(&hook);
		return 0;
	}
	a.body = body;
	webhooks_message_id(a.event_id, a.hook, a.msg_id);
	bson_destroy(&hook);
	db = tr_db_for_tenant(job->tenant);
	found = load_hook(db, a.hook, &hook);
	if (found == TR_ENOTFOUND) {
		rc = 0; /* removed meanwhile: no delivery */
		goto out;
	}
	if (found != TR_OK) {
		snprintf(err, errlen, "the webhook could not be read: %s", tr_strerror(found));
		goto out; /* retried */
	}
	a.at_ms = tr_now_ms();
	if (!bson_iter_init_find(&it, &hook, "active") || !bson_iter_as_bool(&it)) {
		a.status = "skipped";
		log_attempt(db, job, &a, "the webhook is paused");
		rc = 0;
		goto out;
	}
	uint64_t t0 = tr_mono_ns();
	rc = post(job, &hook, &a, err, errlen);
	a.duration_ms = (int64_t)((tr_mono_ns() - t0) / 1000000);
	if (rc == 0) {
		a.status = "delivered";
	} else {
		a.next_ms = tr_job_next_attempt_ms(job);
		a.status = a.next_ms ? "pending" : "failed";
	}
	log_attempt(db, job, &a, rc == 0 ? NULL : err);
	track_health(db, job, a.hook, &hook, rc == 0);
out:
	bson_destroy(&hook);
	tr_db_release(db);
	free(body);
	return rc;
}
