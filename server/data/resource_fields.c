/* The resource engine's fields (resource.h): a request body validated
 * field by field against a resource's table, by kind, into the values to
 * store; and the small helpers on stored documents the engine and the
 * modules share. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
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
tr_parse_date(const char *s)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, m, d;

	/* YYYY-MM-DD, years 0000 to 9999 */
	if (strlen(s) != 10)
		return false;
	for (int i = 0; i < 10; i++)
		if ("0000-00-00"[i] == '0' ? !isdigit((unsigned char)s[i]) : s[i] != '-')
			return false;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (m < 1 || m > 12 || d < 1)
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return d <= days[m - 1] + (m == 2 && leap);
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
	case TR_K_DATE:
		if (!BSON_ITER_HOLDS_UTF8(it) || !tr_parse_date(bson_iter_utf8(it, NULL))) {
			tr_problem_field(c, f->name, "must be a date like 2026-11-22");
			return false;
		}
		BSON_APPEND_UTF8(set, f->name, bson_iter_utf8(it, NULL));
		return true;
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
