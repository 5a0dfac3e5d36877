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
#include "json.h"
#include "log.h"
#include "util.h"
#include "webhooks.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_start(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The webhook, if it still exists for the job's tenant and is active:
 * TR_OK with url and secret, TR_ENOTFOUND when it was removed or paused
 * (no delivery), or the data layer's error when it could not be read (the
 * job is retried: a database outage must not drop deliveries). */
static int
load_hook(const char *id, const char *tenant, char *url, size_t ulen, char *secret, size_t slen)
{
	struct tr_db *db = tr_db_for_tenant(tenant);
	bson_t hook = BSON_INITIALIZER;
	bson_iter_t it;
	int rc = TR_ENOMEM;

	if (db) {
		bson_destroy(&hook);
		rc = tr_db_get(db, WEBHOOKS, id, &hook); /* initialises hook */
	}
	if (rc == TR_OK) {
		if (bson_iter_init_find(&it, &hook, "active") && bson_iter_as_bool(&it)) {
			if (bson_iter_init_find(&it, &hook, "url") && BSON_ITER_HOLDS_UTF8(&it))
				snprintf(url, ulen, "%s", bson_iter_utf8(&it, NULL));
			if (bson_iter_init_find(&it, &hook, "_secret") && BSON_ITER_HOLDS_UTF8(&it))
				snprintf(secret, slen, "%s", bson_iter_utf8(&it, NULL));
		}
		rc = url[0] && secret[0] ? TR_OK : TR_ENOTFOUND;
	}
	bson_destroy(&hook);
	tr_db_release(db);
	return rc;
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

int
webhooks_deliver(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload, event;
	bson_iter_t it;
	char perr[64], url[2048] = "", secret[128] = "", hook[25], pin[600];
	char *body = NULL, header[256], sig_input_head[32];
	size_t blen = 0;
	int rc = -1;

	pthread_once(&curl_once, curl_start);
	if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) != 0 ||
	    !bson_iter_init_find(&it, &payload, "webhook_id") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    !tr_is_object_id(bson_iter_utf8(&it, NULL))) {
		bson_destroy(&payload);
		return 0; /* not a delivery: nothing to do, ever */
	}
	snprintf(hook, sizeof(hook), "%s", bson_iter_utf8(&it, NULL));
	if (bson_iter_init_find(&it, &payload, "event") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		uint32_t len;
		const uint8_t *data;
		bson_iter_document(&it, &len, &data);
		if (bson_init_static(&event, data, len))
			body = tr_json_render(&event, &blen);
	}
	bson_destroy(&payload);
	if (!body)
		return 0;
	int found = load_hook(hook, job->tenant, url, sizeof(url), secret, sizeof(secret));
	if (found == TR_ENOTFOUND) {
		rc = 0; /* removed or paused meanwhile: no delivery */
		goto out;
	}
	if (found != TR_OK) {
		snprintf(err, errlen, "the webhook could not be read: %s", tr_strerror(found));
		goto out; /* retried */
	}
	if (!resolve_pin(url, pin, sizeof(pin), err, errlen))
		goto out;

	/* Signature: HMAC-SHA256 of "<unix time>.<body>" with the secret. */
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char mac_hex[2 * sizeof(mac) + 1];
	crypto_auth_hmacsha256_state st;
	long now = (long)time(NULL);
	int hn = snprintf(sig_input_head, sizeof(sig_input_head), "%ld.", now);
	crypto_auth_hmacsha256_init(&st, (const unsigned char *)secret, strlen(secret));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)sig_input_head, (size_t)hn);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, blen);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(mac_hex, sizeof(mac_hex), mac, sizeof(mac));

	CURL *curl = curl_easy_init();
	struct curl_slist *headers = NULL, *resolve = NULL;
	if (!curl) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, "User-Agent: Trellis-Webhooks/1");
	snprintf(header, sizeof(header), "X-Trellis-Delivery: %s", job->id);
	headers = curl_slist_append(headers, header);
	snprintf(header, sizeof(header), "X-Trellis-Signature: t=%ld,v1=%s", now, mac_hex);
	headers = curl_slist_append(headers, header);
	resolve = curl_slist_append(resolve, pin);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)blen);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, tr_config_int("webhook_timeout_ms"));
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	CURLcode cc = curl_easy_perform(curl);
	long status = 0;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK)
		snprintf(err, errlen, "%s", curl_easy_strerror(cc));
	else if (status < 200 || status > 299)
		snprintf(err, errlen, "the endpoint answered HTTP %ld", status);
	else
		rc = 0;
	curl_slist_free_all(headers);
	curl_slist_free_all(resolve);
	curl_easy_cleanup(curl);
out:
	sodium_memzero(secret, sizeof(secret));
	free(body);
	return rc;
}
