// unit-under-test: server/net/ws_protocol.c
/* What a WebSocket client sends (server/net/ws_protocol.c, included to
 * reach on_message): a text frame's bytes, read as JSON and dispatched by
 * "type" - auth, subscribe, unsubscribe, ping - in each state of the
 * connection. libwebsockets has already taken the frame apart; this is
 * what the server itself makes of the payload. No server runs: the
 * connection has no lws socket, so replies are rendered and dropped
 * instead of queued (tr_ws_enqueue), and Redis is down, so a valid token
 * ends in "unavailable" rather than a session check.
 *
 * An input is one byte choosing the connection's state and permissions,
 * then the frame's payload. "@token@" in it is replaced by an access token
 * this process signed, so the fuzzer reaches what follows the signature
 * check (resume_from) without forging HMACs. */
#include "fuzz.h"

#include "../../server/net/ws_protocol.c"

#define TOKEN_MARK "@token@"

static struct tr_config fuzz_cfg;
static char *token; /* valid for the run; freed at exit */

static const enum ws_state states[] = {WS_AWAIT_AUTH, WS_AUTHING, WS_READY, WS_READY};
/* The session's permissions: none, some (one topic only as its own
 * records), every topic's. */
static const char *const grants[] = {
    NULL,
    "crm.leads.read:own crm.deals.read bpm.tasks.read",
    "crm.leads.read crm.deals.read crm.clients.read crm.tasks.read crm.claims.read "
    "erp.orders.read erp.stock.read erp.invoices.read erp.shipments.read erp.payments.read "
    "erp.purchasing.read erp.ledger.read erp.production.read bpm.tasks.read "
    "bpm.instances.read system.users.read system.roles.read system.api_keys.read "
    "system.webhooks.read",
};

static void
free_token(void)
{
	free(token);
	tr_auth_close();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	(void)argc;
	(void)argv;
	unsetenv("TRELLIS_CONFIG");
	if (tr_config_load(&fuzz_cfg, NULL, err, sizeof(err)) != 0)
		fuzz_fail("configuration: %s", err);
	tr_cfg = &fuzz_cfg;
	W.cfg = &fuzz_cfg;
	tr_auth_init(uv_default_loop(), &fuzz_cfg);
	token = tr_auth_issue_token("65a000000000000000000001", "65a000000000000000000002",
				    "fuzz-session");
	if (!token)
		fuzz_fail("could not sign an access token");
	atexit(free_token);
	return 0;
}

/* The payload as the server holds it: exactly its bytes (no NUL after
 * them), the first TOKEN_MARK replaced by the token. */
static char *
payload_of(const uint8_t *data, size_t size, size_t *len)
{
	const uint8_t *mark = memmem(data, size, TOKEN_MARK, strlen(TOKEN_MARK));
	size_t before = mark ? (size_t)(mark - data) : size;
	size_t tlen = mark ? strlen(token) : 0,
	       after = mark ? size - before - strlen(TOKEN_MARK) : 0;
	char *p;

	*len = before + tlen + after;
	p = malloc(*len ? *len : 1);
	if (!p)
		abort();
	memcpy(p, data, before);
	if (mark) {
		memcpy(p + before, token, tlen);
		memcpy(p + before + tlen, mark + strlen(TOKEN_MARK), after);
	}
	return p;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ws_conn *c;
	const char *grant;
	size_t len;
	char *payload;

	if (size < 1 || size - 1 > (size_t)fuzz_cfg.ws_max_frame)
		return 0; /* the server closes the connection first */
	c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->state = states[data[0] & 3];
	grant = grants[(data[0] >> 2) % (sizeof(grants) / sizeof(grants[0]))];
	c->perms = grant ? strdup(grant) : NULL;
	c->principal.perms = c->perms;
	c->lag_max_ms = -1;
	if (c->state != WS_AWAIT_AUTH) {
		snprintf(c->principal.tenant_hex, sizeof(c->principal.tenant_hex), "%s",
			 "65a000000000000000000001");
		snprintf(c->principal.user_hex, sizeof(c->principal.user_hex), "%s",
			 "65a000000000000000000002");
	}
	payload = payload_of(data + 1, size - 1, &len);
	on_message(c, payload, len);
	if (c->checking || c->in_tenant)
		fuzz_fail("a frame left the connection waiting for Redis");
	for (int t = 0; t < 32; t++)
		if ((c->subscribed & (1u << t)) && !tr_topic_name(t)[0])
			fuzz_fail("subscribed to topic %d, which does not exist", t);
	free(payload);
	tr_ws_conn_free(c);
	return 0;
}
