/* The resource engine (resource.h): validation by field kind, state
 * machines, ":own" scoping, events, and the five handlers every resource
 * shares. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "events.h"
#include "json.h"
#include "resource.h"

#define MAX_FIELDS 32

/* ---- small helpers ---- */

bool
tr_parse_time(const char *s, int64_t *ms)
{
	struct tm tm = {0};
	int frac = 0, digits = 0, off = 0;
	const char *p;

	/* YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM) */
	if (strlen(s) < 20)
		return false;
	for (int i = 0; i < 19; i++) {
		char want = "0000-00-00T00:00:00"[i];
		if (want == '0' ? !isdigit((unsigned char)s[i]) : s[i] != want)
			return false;
	}
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = atoi(s + 5) - 1;
	tm.tm_mday = atoi(s + 8);
	tm.tm_hour = atoi(s + 11);
	tm.tm_min = atoi(s + 14);
	tm.tm_sec = atoi(s + 17);
	if (tm.tm_year < 0 || tm.tm_year > 8099 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return false;
	p = s + 19;
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p)) {
			if (digits < 3)
				frac = frac * 10 + (*p - '0');
			digits++;
			p++;
		}
		if (digits == 0 || digits > 9)
			return false;
		for (int d = digits; d < 3; d++)
			frac *= 10;
	}
	if (*p == 'Z' && p[1] == '\0') {
		off = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && isdigit((unsigned char)p[1]) &&
		   isdigit((unsigned char)p[2]) && p[3] == ':' && isdigit((unsigned char)p[4]) &&
		   isdigit((unsigned char)p[5])) {
		off = (atoi(p + 1) * 60 + atoi(p + 4)) * (*p == '+' ? 1 : -1);
	} else {
		return false;
	}
	int mday = tm.tm_mday;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != mday) /* 2026-02-30 normalises: refused */
		return false;
	*ms = ((int64_t)t - (int64_t)off * 60) * 1000 + frac;
	return true;
}

bool
tr_doc_oid(const bson_t *doc, const char *field, bson_oid_t *out)
{
	bson_iter_t it;

	if (!doc || !bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_OID(&it))
		return false;
	bson_oid_copy(bson_iter_oid(&it), out);
	return true;
}

const char *
tr_doc_str(const bson_t *doc, const char *field)
{
	bson_iter_t it;

	if (!doc || !bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_UTF8(&it))
		return NULL;
	return bson_iter_utf8(&it, NULL);
}

int64_t
tr_doc_int(const bson_t *doc, const char *field, int64_t dflt)
{
	bson_iter_t it;

	if (!doc || !bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_NUMBER(&it))
		return dflt;
	return bson_iter_as_int64(&it);
}

void
tr_doc_remove(bson_t *doc, const char *field)
{
	bson_t rest = BSON_INITIALIZER;

	if (!bson_has_field(doc, field)) {
		bson_destroy(&rest);
		return;
	}
	bson_copy_to_excluding_noinit(doc, &rest, field, NULL);
	bson_reinit(doc);
	bson_concat(doc, &rest);
	bson_destroy(&rest);
}

const char *
tr_body_str(struct tr_ctx *c, const char *field)
{
	return c->req->has_body ? tr_doc_str(&c->req->body, field) : NULL;
}

bool
tr_res_exists(struct tr_ctx *c, const char *coll, const bson_oid_t *id)
{
	char hex[25];
	bson_t doc;
	int rc;

	bson_oid_to_string(id, hex);
	rc = tr_db_get(c->db, coll, hex, &doc);
	bson_destroy(&doc);
	return rc == TR_OK;
}

struct id_list {
	char (*ids)[25];
	size_t n, cap;
};

static int
collect_id(void *arg, const bson_t *resource)
{
	struct id_list *l = arg;
	const char *id = tr_doc_str(resource, "id");

	if (!id || !tr_is_object_id(id))
		return TR_OK;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char(*more)[25] = realloc(l->ids, cap * sizeof(*more));
		if (!more)
			return TR_ENOMEM;
		l->ids = more;
		l->cap = cap;
	}
	snprintf(l->ids[l->n++], 25, "%s", id);
	return TR_OK;
}

int
tr_res_matching_ids(struct tr_ctx *c, const char *coll, const bson_t *filter, char (**ids)[25],
		    size_t *n)
{
	struct id_list l = {NULL, 0, 0};
	int rc = tr_db_each(c->db, coll, filter, collect_id, &l);

	if (rc != TR_OK) {
		free(l.ids);
		l.ids = NULL;
		l.n = 0;
	}
	*ids = l.ids;
	*n = l.n;
	return rc;
}

static const char *
msg(struct tr_ctx *c, const char *fmt, long long a, long long b)
{
	char *m = tr_arena_alloc(c->req->arena, 128);
	if (!m)
		return "is not valid";
	snprintf(m, 128, fmt, a, b);
	return m;
}

/* ---- validation by kind ---- */

static bool
money_ok(struct tr_ctx *c, const struct tr_field *f, bson_iter_t *it, bson_t *set)
{
	bson_iter_t sub;
	int64_t amount = 0;
	const char *currency = NULL;
	int seen = 0;

	if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub)) {
		tr_problem_field(c, f->name,
				 "must be {\"amount\": <minor units>, \"currency\": \"EUR\"}");
		return false;
	}
	while (bson_iter_next(&sub)) {
		const char *k = bson_iter_key(&sub);
		if (strcmp(k, "amount") == 0 &&
		    (BSON_ITER_HOLDS_INT32(&sub) || BSON_ITER_HOLDS_INT64(&sub))) {
			amount = bson_iter_as_int64(&sub);
			seen |= 1;
		} else if (strcmp(k, "currency") == 0 && BSON_ITER_HOLDS_UTF8(&sub)) {
			currency = bson_iter_utf8(&sub, NULL);
			seen |= 2;
		} else {
			seen |= 4;
		}
	}
	if (seen != 3 || strlen(currency) != 3 || !isupper((unsigned char)currency[0]) ||
	    !isupper((unsigned char)currency[1]) || !isupper((unsigned char)currency[2])) {
		tr_problem_field(c, f->name,
				 "must be {\"amount\": <integer minor units>, \"currency\": "
				 "\"<ISO 4217 code>\"}");
		return false;
	}
	if (amount < f->min || amount > f->max) {
		tr_problem_field(c, f->name, msg(c, "amount must be %lld to %lld", f->min, f->max));
		return false;
	}
	bson_t m;
	BSON_APPEND_DOCUMENT_BEGIN(set, f->name, &m);
	BSON_APPEND_INT64(&m, "amount", amount);
	BSON_APPEND_UTF8(&m, "currency", currency);
	bson_append_document_end(set, &m);
	return true;
}

static bool
ref_ok(struct tr_ctx *c, const struct tr_field *f, const char *name, bson_iter_t *it,
       bson_oid_t *out)
{
	const char *hex = BSON_ITER_HOLDS_UTF8(it) ? bson_iter_utf8(it, NULL) : "";

	if (!tr_is_object_id(hex)) {
		tr_problem_field(c, name, "must be an id");
		return false;
	}
	bson_oid_init_from_string(out, hex);
	if (!tr_res_exists(c, f->ref, out)) {
		tr_problem_field(c, name, "names a record that does not exist");
		return false;
	}
	return true;
}

static bool
line_ok(const char *s, bool multiline)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 && !(multiline && (*p == '\n' || *p == '\t' || *p == '\r')))
			return false;
	return true;
}

static size_t
chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static bool
field_ok(struct tr_ctx *c, const struct tr_field *f, bson_iter_t *it, bson_t *set)
{
	const char *s;

	switch (f->kind) {
	case TR_K_LINE:
	case TR_K_TEXT:
	case TR_K_EMAIL:
	case TR_K_PHONE:
	case TR_K_ENUM: {
		if (!BSON_ITER_HOLDS_UTF8(it)) {
			tr_problem_field(c, f->name, "must be a string");
			return false;
		}
		uint32_t len;
		s = bson_iter_utf8(it, &len);
		if (strlen(s) != len || !line_ok(s, f->kind == TR_K_TEXT)) {
			tr_problem_field(c, f->name, "must not contain control characters");
			return false;
		}
		if (f->kind == TR_K_ENUM) {
			for (const char *const *o = f->options; *o; o++)
				if (strcmp(*o, s) == 0) {
					BSON_APPEND_UTF8(set, f->name, s);
					return true;
				}
			char *m = tr_arena_alloc(c->req->arena, 256);
			size_t n = (size_t)snprintf(m, 256, "must be one of:");
			for (const char *const *o = f->options; *o && n < 240; o++)
				n += (size_t)snprintf(m + n, 256 - n, " %s", *o);
			tr_problem_field(c, f->name, m);
			return false;
		}
		long long min = f->min, max = f->max ? f->max : 200;
		if ((long long)chars(s) < min || (long long)chars(s) > max) {
			tr_problem_field(c, f->name,
					 msg(c, "must be %lld to %lld characters long", min, max));
			return false;
		}
		if (f->kind == TR_K_EMAIL) {
			const char *at = strchr(s, '@');
			if (!at || at == s || !strchr(at, '.') || strchr(at + 1, '@') ||
			    strchr(s, ' ')) {
				tr_problem_field(c, f->name, "must be an email address");
				return false;
			}
			char *low = tr_arena_strdup(c->req->arena, s);
			for (char *p = low; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			BSON_APPEND_UTF8(set, f->name, low);
			return true;
		}
		if (f->kind == TR_K_PHONE) {
			int digits = 0;
			for (const char *p = s; *p; p++) {
				if (isdigit((unsigned char)*p))
					digits++;
				else if (!strchr("+-() .", *p)) {
					digits = -100;
					break;
				}
			}
			if (digits < 5 || digits > 15) {
				tr_problem_field(c, f->name,
						 "must be a phone number (5 to 15 digits)");
				return false;
			}
		}
		BSON_APPEND_UTF8(set, f->name, s);
		return true;
	}
	case TR_K_MONEY:
		return money_ok(c, f, it, set);
	case TR_K_TIME: {
		int64_t ms;
		if (!BSON_ITER_HOLDS_UTF8(it) || !tr_parse_time(bson_iter_utf8(it, NULL), &ms)) {
			tr_problem_field(c, f->name,
					 "must be an RFC 3339 time like 2026-11-22T16:20:07.123Z");
			return false;
		}
		BSON_APPEND_DATE_TIME(set, f->name, ms);
		return true;
	}
	case TR_K_REF: {
		bson_oid_t oid;
		if (!ref_ok(c, f, f->name, it, &oid))
			return false;
		BSON_APPEND_OID(set, f->name, &oid);
		return true;
	}
	case TR_K_REFS: {
		bson_iter_t arr;
		bson_t list;
		int n = 0;
		bool ok = true;
		if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &arr)) {
			tr_problem_field(c, f->name, "must be an array of ids");
			return false;
		}
		BSON_APPEND_ARRAY_BEGIN(set, f->name, &list);
		while (bson_iter_next(&arr) && ok) {
			bson_oid_t oid;
			char key[16];
			const char *k;
			if (n >= (f->max ? f->max : 100)) {
				tr_problem_field(c, f->name, "has too many ids");
				ok = false;
				break;
			}
			ok = ref_ok(c, f, f->name, &arr, &oid);
			bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
			if (ok)
				BSON_APPEND_OID(&list, k, &oid);
		}
		bson_append_array_end(set, &list);
		return ok;
	}
	case TR_K_BOOL:
		if (!BSON_ITER_HOLDS_BOOL(it)) {
			tr_problem_field(c, f->name, "must be true or false");
			return false;
		}
		BSON_APPEND_BOOL(set, f->name, bson_iter_bool(it));
		return true;
	case TR_K_INT:
	case TR_K_QUANTITY: {
		if (!BSON_ITER_HOLDS_INT32(it) && !BSON_ITER_HOLDS_INT64(it)) {
			tr_problem_field(c, f->name, "must be an integer");
			return false;
		}
		int64_t v = bson_iter_as_int64(it);
		if (v < f->min || v > f->max) {
			tr_problem_field(c, f->name,
					 msg(c, "must be %lld to %lld", f->min, f->max));
			return false;
		}
		BSON_APPEND_INT64(set, f->name, v);
		return true;
	}
	case TR_K_STRINGS: {
		bson_iter_t arr;
		bson_t list;
		int n = 0;
		if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &arr)) {
			tr_problem_field(c, f->name, "must be an array of strings");
			return false;
		}
		BSON_APPEND_ARRAY_BEGIN(set, f->name, &list);
		bool ok = true;
		while (bson_iter_next(&arr)) {
			char key[16];
			const char *k;
			const char *v =
			    BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, NULL) : NULL;
			if (!v || !*v || chars(v) > 100 || !line_ok(v, false) ||
			    n >= (f->max ? f->max : 100)) {
				ok = false;
				break;
			}
			bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
			BSON_APPEND_UTF8(&list, k, v);
		}
		bson_append_array_end(set, &list);
		if (!ok)
			tr_problem_field(c, f->name, "must be an array of short one-line strings");
		return ok;
	}
	case TR_K_OBJECT:
		if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
			tr_problem_field(c, f->name, "must be an object");
			return false;
		}
		return true; /* the entity's hook reads and stores it */
	case TR_K_ARRAY:
		if (!BSON_ITER_HOLDS_ARRAY(it)) {
			tr_problem_field(c, f->name, "must be an array");
			return false;
		}
		return true; /* the entity's hook reads and stores it */
	case TR_K_CUSTOM:
		return true; /* tr_custom_check */
	}
	return false;
}

bool
tr_res_read_field(struct tr_ctx *c, const struct tr_field *f, bson_t *set)
{
	bson_iter_t it;

	if (!c->req->has_body || !bson_iter_init_find(&it, &c->req->body, f->name) ||
	    BSON_ITER_HOLDS_NULL(&it)) {
		if (f->flags & TR_F_REQUIRED) {
			tr_problem_field(c, f->name, "is required");
			return false;
		}
		return true;
	}
	return field_ok(c, f, &it, set);
}

bool
tr_res_read_fields(struct tr_ctx *c, const struct tr_resource *e, bool creating, bson_t *set)
{
	const char *allowed[MAX_FIELDS + 1];
	int n = 0;
	bool ok = true;
	bson_iter_t it;

	for (const struct tr_field *f = e->fields; f->name && n < MAX_FIELDS; f++)
		allowed[n++] = f->name;
	allowed[n] = NULL;
	ok = tr_body_only(c, allowed);
	for (const struct tr_field *f = e->fields; f->name; f++) {
		bool present = c->req->has_body && bson_iter_init_find(&it, &c->req->body, f->name);
		if (present && (f->flags & TR_F_SERVER)) {
			tr_problem_field(c, f->name, "is set by the server");
			ok = false;
			continue;
		}
		if (present && !creating && (f->flags & TR_F_FIXED)) {
			tr_problem_field(c, f->name, "cannot be changed");
			ok = false;
			continue;
		}
		if (!present || BSON_ITER_HOLDS_NULL(&it)) {
			if (present && (f->flags & TR_F_NULLABLE) && !(f->flags & TR_F_REQUIRED)) {
				BSON_APPEND_NULL(set, f->name);
			} else if (present) {
				tr_problem_field(c, f->name, "must not be null");
				ok = false;
			} else if (creating && (f->flags & TR_F_REQUIRED)) {
				tr_problem_field(c, f->name, "is required");
				ok = false;
			}
			continue;
		}
		ok &= field_ok(c, f, &it, set);
	}
	return ok;
}

bool
tr_res_read_body(struct tr_ctx *c, const struct tr_field *fields, bson_t *set)
{
	const struct tr_resource body = {.fields = fields};

	return tr_res_read_fields(c, &body, true, set);
}

/* ---- nesting ---- */

static const char *
id_param(struct tr_ctx *c, const struct tr_resource *e)
{
	return tr_param(c, e->parent ? 1 : 0);
}

/* The parent named by the path exists and the caller may see it; its id
 * goes to *id. */
static bool
parent_ok(struct tr_ctx *c, const struct tr_resource *e, bson_oid_t *id)
{
	bson_t parent;
	bool ok;

	if (!e->parent)
		return true;
	ok = tr_res_load(c, e->parent, tr_param(c, 0), &parent);
	if (ok)
		tr_doc_oid(&parent, "_id", id);
	bson_destroy(&parent);
	return ok;
}

/* ---- ownership ---- */

static bool
own_only(const struct tr_ctx *c, const struct tr_resource *e)
{
	return e->owner_field && c->req->principal.own_only;
}

static bool
visible(const struct tr_ctx *c, const struct tr_resource *e, const bson_t *doc)
{
	bson_oid_t owner;

	if (!own_only(c, e))
		return true;
	return tr_doc_oid(doc, e->owner_field, &owner) &&
	       bson_oid_equal(&owner, &c->req->principal.user_id);
}

bool
tr_res_load(struct tr_ctx *c, const struct tr_resource *e, const char *id, bson_t *out)
{
	int rc = tr_db_get(c->db, e->coll, id, out);

	if (rc == TR_OK && !visible(c, e, out))
		rc = TR_ENOTFOUND; /* not theirs: as if it did not exist */
	if (rc == TR_OK && e->parent) {
		/* under the parent the path names, which the caller may see */
		bson_oid_t pid, mine;
		bson_t parent = BSON_INITIALIZER;
		if (!tr_is_object_id(tr_param(c, 0)) || !tr_doc_oid(out, e->parent_field, &mine))
			rc = TR_ENOTFOUND;
		else {
			bson_oid_init_from_string(&pid, tr_param(c, 0));
			if (!bson_oid_equal(&pid, &mine))
				rc = TR_ENOTFOUND;
			else if (tr_db_get(c->db, e->parent->coll, tr_param(c, 0), &parent) !=
				     TR_OK ||
				 !visible(c, e->parent, &parent))
				rc = TR_ENOTFOUND;
			bson_destroy(&parent);
		}
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	return true;
}

/* An ":own" caller may not give a record to someone else. */
static bool
owner_allowed(struct tr_ctx *c, const struct tr_resource *e, const bson_t *set)
{
	bson_oid_t owner;

	if (!own_only(c, e) || !tr_doc_oid(set, e->owner_field, &owner) ||
	    bson_oid_equal(&owner, &c->req->principal.user_id))
		return true;
	tr_problem(c, 403, "forbidden", "you may only assign records to yourself");
	return false;
}

/* ---- events ---- */

void
tr_res_emit(struct tr_ctx *c, const struct tr_resource *e, const char *event, const bson_t *stored)
{
	bson_t data = BSON_INITIALIZER;
	bson_oid_t id, owner;
	char hex[25], owner_hex[25] = "";

	if (!e->topic || !tr_doc_oid(stored, "_id", &id))
		return;
	bson_oid_to_string(&id, hex);
	if (e->owner_field && tr_doc_oid(stored, e->owner_field, &owner))
		bson_oid_to_string(&owner, owner_hex);
	tr_render_resource(stored, &data);
	tr_emit_data(c, e->topic, event, hex, owner_hex[0] ? owner_hex : NULL, &data);
	bson_destroy(&data);
}

static const char *
event_name(struct tr_ctx *c, const struct tr_resource *e, const char *what)
{
	char *name = tr_arena_alloc(c->req->arena, 64);
	snprintf(name, 64, "%s.%s", e->event, what);
	return name;
}

/* ---- state machines ---- */

/* Does field hold a value after a change (set's, or old's when set has
 * none)? null and "" do not count. */
static bool
has_value_after(const bson_t *set, const bson_t *old, const char *field)
{
	bson_iter_t it;
	const bson_t *doc = set && bson_has_field(set, field) ? set : old;

	if (!doc || !bson_iter_init_find(&it, doc, field) || BSON_ITER_HOLDS_NULL(&it))
		return false;
	return !BSON_ITER_HOLDS_UTF8(&it) || *bson_iter_utf8(&it, NULL);
}

static bool
same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* "qualified, lost" - where a record in state from may go by a PATCH. */
static const char *
moves_from(struct tr_ctx *c, const struct tr_resource *e, const char *from)
{
	char *out = tr_arena_alloc(c->req->arena, 256);
	size_t n = 0;

	if (!out)
		return "";
	out[0] = '\0';
	for (const struct tr_transition *t = e->states->moves; t->to; t++)
		if (same(t->from, from) && !t->action && n < 200)
			n += (size_t)snprintf(out + n, 256 - n, "%s%s", n ? ", " : "", t->to);
	return out;
}

bool
tr_res_move_ok(struct tr_ctx *c, const struct tr_resource *e, const char *from, const char *to,
	       const char *action, const bson_t *set, const bson_t *old)
{
	const char *field = e->states->field;
	const struct tr_transition *found = NULL;
	char *m = tr_arena_alloc(c->req->arena, 512);

	for (const struct tr_transition *t = e->states->moves; t->to; t++)
		if (same(t->from, from) && strcmp(t->to, to) == 0 &&
		    (!found || same(t->action, action)))
			found = t;
	if (!m) {
		tr_problem_from_err(c, TR_ENOMEM);
		return false;
	}
	if (!found && !from) {
		snprintf(m, 512, "a new %s starts as %s", e->name, moves_from(c, e, NULL));
		tr_problem_field(c, field, m);
		return false;
	}
	if (!found) {
		const char *next = moves_from(c, e, from);
		if (*next)
			snprintf(m, 512, "a %s's %s moves from %s to %s, not to %s", e->name, field,
				 from, next, to);
		else
			snprintf(m, 512, "the %s is %s, which is final", e->name, from);
		tr_problem(c, 409, "conflict", m);
		return false;
	}
	if (!same(found->action, action)) {
		snprintf(m, 512, "a %s's %s becomes %s through POST %s/{id}/%s", e->name, field, to,
			 e->path, found->action);
		tr_problem(c, 409, "conflict", m);
		return false;
	}
	if (found->requires) {
		if (!has_value_after(set, old, found->requires)) {
			snprintf(m, 512, "is required when a %s becomes %s", e->name, to);
			tr_problem_field(c, found->requires, m);
			return false;
		}
	}
	return true;
}

/* A create or PATCH against the state machine: a new record starts in the
 * initial state (set when not given); a change of the state field must be
 * a move of the table. */
static bool
states_ok(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *field = e->states->field;
	const char *to = tr_doc_str(set, field), *from = old ? tr_doc_str(old, field) : NULL;

	if (!old && !to) {
		for (const struct tr_transition *t = e->states->moves; t->to; t++)
			if (!t->from && !t->action) {
				BSON_APPEND_UTF8(set, field, t->to);
				return true;
			}
		return true;
	}
	if (!to || (old && same(from, to)))
		return true;
	to = tr_arena_strdup(c->req->arena, to); /* set may grow under it */
	return tr_res_move_ok(c, e, old ? from : NULL, to, NULL, set, old);
}

/* ---- the handlers ---- */

static void
conflict_or_error(struct tr_ctx *c, const struct tr_resource *e, int rc)
{
	if (rc == TR_EDUPLICATE) {
		char *m = tr_arena_alloc(c->req->arena, 96);
		if (m)
			snprintf(m, 96, "a %s with these values exists",
				 e->name ? e->name : "record");
		tr_problem(c, 409, "conflict", m ? m : "a record with these values exists");
	} else
		tr_problem_from_err(c, rc);
}

void
tr_res_create(struct tr_ctx *c, const struct tr_resource *e)
{
	bson_t set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	int rc;

	if (!tr_res_read_fields(c, e, true, &set))
		goto out;
	if (e->parent) {
		bson_oid_t pid;
		if (!parent_ok(c, e, &pid))
			goto out;
		BSON_APPEND_OID(&set, e->parent_field, &pid);
	}
	/* a user's new record is theirs; a partner's (API key) waits for
	 * someone to take it */
	if (e->owner_field && !bson_has_field(&set, e->owner_field) && !c->req->api_key &&
	    tr_is_object_id(c->req->principal.user_hex))
		BSON_APPEND_OID(&set, e->owner_field, &c->req->principal.user_id);
	if (!owner_allowed(c, e, &set))
		goto out;
	if (e->states && !states_ok(c, e, &set, NULL))
		goto out;
	if (e->custom && !tr_custom_check(c, e, true, NULL, &set))
		goto out;
	if (e->hook && !e->hook(c, e, &set, NULL))
		goto out;
	if (c->resp->status) /* a hook answered */
		goto out;
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, e->coll, &set, &stored);
	if (rc != TR_OK) {
		conflict_or_error(c, e, rc);
		goto out;
	}
	bson_oid_t id;
	char *loc = tr_arena_alloc(c->req->arena, 160);
	if (tr_doc_oid(&stored, "_id", &id) && loc) {
		char hex[25];
		bson_oid_to_string(&id, hex);
		if (e->parent) /* /v1/crm/clients/{id}/contacts/{cid} */
			snprintf(loc, 160, "%s/%s/%s/%s", e->parent->path, tr_param(c, 0), e->path,
				 hex);
		else
			snprintf(loc, 160, "%s/%s", e->path, hex);
		c->resp->location = loc;
	}
	if (e->event)
		tr_res_emit(c, e, event_name(c, e, "created"), &stored);
	tr_reply_resource(c, 201, &stored);
	if (e->saved)
		e->saved(c, &stored);
out:
	bson_destroy(&set);
	bson_destroy(&stored);
}

void
tr_res_get(struct tr_ctx *c, const struct tr_resource *e)
{
	bson_t stored;

	if (tr_res_load(c, e, id_param(c, e), &stored))
		tr_reply_resource(c, 200, &stored);
	bson_destroy(&stored);
}

/* Stores set on record id at version (> 0: only if still there); on
 * success emits event and replies 200. Returns the data layer's code;
 * nothing is answered for TR_EVERSION when quiet_version (the caller
 * retries). */
static int
store(struct tr_ctx *c, const struct tr_resource *e, const char *id, long long version,
      const bson_t *set, const char *event, bool quiet_version)
{
	bson_t stored = BSON_INITIALIZER;
	int rc;

	bson_destroy(&stored);
	rc = tr_db_update(c->db, e->coll, id, version, set, NULL, &stored);
	if (rc == TR_EVERSION && quiet_version) {
		/* nothing to answer yet */
	} else if (rc != TR_OK) {
		conflict_or_error(c, e, rc);
	} else {
		if (event)
			tr_res_emit(c, e, event, &stored);
		tr_reply_resource(c, 200, &stored);
		if (e->saved)
			e->saved(c, &stored);
	}
	bson_destroy(&stored);
	return rc;
}

void
tr_res_save(struct tr_ctx *c, const struct tr_resource *e, const char *id, long long version,
	    const bson_t *set, const char *event)
{
	store(c, e, id, version, set, event, false);
}

/* A PATCH is checked against the record as it is stored (hooks read the
 * old values) and written on that version only, so nothing another writer
 * changed in between is lost. Without If-Match, losing that race is not
 * the client's concern: the change is checked and tried again on the new
 * version; a record that keeps changing under it that many times answers
 * 409 record-busy, never 412 to a client that named no version. */
#define UPDATE_ATTEMPTS 50

void
tr_res_update(struct tr_ctx *c, const struct tr_resource *e)
{
	bson_t set = BSON_INITIALIZER, old = BSON_INITIALIZER;
	long long version;

	if (!tr_if_match(c, &version))
		goto out;
	for (int attempt = 1;; attempt++) {
		bson_reinit(&set);
		if (!tr_res_read_fields(c, e, false, &set))
			goto out;
		bson_destroy(&old); /* tr_res_load initialises it, found or not */
		if (!tr_res_load(c, e, id_param(c, e), &old))
			goto out;
		if (!owner_allowed(c, e, &set))
			goto out;
		if (e->states && !states_ok(c, e, &set, &old))
			goto out;
		if (e->custom && !tr_custom_check(c, e, false, &old, &set))
			goto out;
		if (e->hook && !e->hook(c, e, &set, &old))
			goto out;
		if (c->resp->status)
			goto out;
		int rc = store(c, e, id_param(c, e),
			       version > 0 ? version : tr_doc_int(&old, "version", 0), &set,
			       e->event ? event_name(c, e, "updated") : NULL, version <= 0);
		if (rc != TR_EVERSION || version > 0)
			break;
		if (attempt == UPDATE_ATTEMPTS) {
			tr_problem_from_err(c, TR_EBUSY);
			break;
		}
	}
out:
	bson_destroy(&set);
	bson_destroy(&old);
}

void
tr_res_delete(struct tr_ctx *c, const struct tr_resource *e)
{
	bson_t old = BSON_INITIALIZER;
	long long version;
	int rc;

	if (!tr_if_match(c, &version))
		goto out;
	bson_destroy(&old);
	if (!tr_res_load(c, e, id_param(c, e), &old))
		goto out;
	if (e->may_delete && !e->may_delete(c, &old))
		goto out;
	if (version <= 0)
		version = tr_doc_int(&old, "version", 0);
	rc = tr_db_delete(c->db, e->coll, id_param(c, e), version);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (e->event)
		tr_res_emit(c, e, event_name(c, e, "deleted"), &old);
	tr_reply_empty(c, 204);
	if (e->removed)
		e->removed(c, &old);
out:
	bson_destroy(&old);
}

/* Lists filter on fields marked TR_F_FILTER (?status=new&owner_id=...). */
void
tr_res_list(struct tr_ctx *c, const struct tr_resource *e, const bson_t *extra_filter)
{
	bson_t filter = BSON_INITIALIZER;
	bson_oid_t pid;

	if (e->listing && !e->listing(c)) {
		bson_destroy(&filter);
		return;
	}
	if (extra_filter)
		bson_concat(&filter, extra_filter);
	if (e->parent) {
		if (!parent_ok(c, e, &pid)) {
			bson_destroy(&filter);
			return;
		}
		BSON_APPEND_OID(&filter, e->parent_field, &pid);
	}
	bool narrow = e->parent != NULL; /* the children of one record */
	for (const struct tr_field *f = e->fields; f->name; f++) {
		const char *v;
		if (!(f->flags & TR_F_FILTER) || !(v = tr_query(c, f->name)))
			continue;
		narrow |= (f->flags & TR_F_NARROW) != 0;
		if (f->kind == TR_K_REF) {
			bson_oid_t oid;
			if (!tr_is_object_id(v)) {
				tr_problem_field(c, f->name, "must be an id");
				continue;
			}
			bson_oid_init_from_string(&oid, v);
			BSON_APPEND_OID(&filter, f->name, &oid);
		} else if (f->kind == TR_K_BOOL) {
			if (strcmp(v, "true") && strcmp(v, "false")) {
				tr_problem_field(c, f->name, "must be true or false");
				continue;
			}
			BSON_APPEND_BOOL(&filter, f->name, strcmp(v, "true") == 0);
		} else if (f->kind == TR_K_ENUM) {
			bool known = false;
			for (const char *const *o = f->options; *o; o++)
				known |= strcmp(*o, v) == 0;
			if (!known) {
				tr_problem_field(c, f->name, "is not one of the allowed values");
				continue;
			}
			BSON_APPEND_UTF8(&filter, f->name, v);
		} else if (f->kind == TR_K_EMAIL) { /* stored in lower case */
			char *low = tr_arena_strdup(c->req->arena, v);
			for (char *p = low; p && *p; p++)
				*p = (char)tolower((unsigned char)*p);
			BSON_APPEND_UTF8(&filter, f->name, low ? low : v);
		} else {
			BSON_APPEND_UTF8(&filter, f->name, v);
		}
	}
	if (!c->resp->status) {
		if (own_only(c, e)) {
			bson_iter_t it;
			if (!bson_iter_init_find(&it, &filter, e->owner_field))
				BSON_APPEND_OID(&filter, e->owner_field,
						&c->req->principal.user_id);
			else if (!BSON_ITER_HOLDS_OID(&it) ||
				 !bson_oid_equal(bson_iter_oid(&it), &c->req->principal.user_id)) {
				/* asked for someone else's: nothing of theirs is visible */
				bson_reinit(&filter);
				BSON_APPEND_OID(&filter, e->owner_field,
						&c->req->principal.user_id);
				BSON_APPEND_BOOL(&filter, "_never", true);
			}
		}
		tr_list_reply_as(c, e->coll, &filter, e->sorts, narrow);
	}
	bson_destroy(&filter);
}

/* ---- the routes a declaration yields (the router builds them) ---- */

void
tr_res_list_route(struct tr_ctx *c)
{
	tr_res_list(c, c->req->route->resource, NULL);
}

void
tr_res_create_route(struct tr_ctx *c)
{
	tr_res_create(c, c->req->route->resource);
}

void
tr_res_get_route(struct tr_ctx *c)
{
	tr_res_get(c, c->req->route->resource);
}

void
tr_res_update_route(struct tr_ctx *c)
{
	tr_res_update(c, c->req->route->resource);
}

void
tr_res_delete_route(struct tr_ctx *c)
{
	tr_res_delete(c, c->req->route->resource);
}
