/* The organisation as a whole (people.h):
 *   GET /v1/erp/org-chart   the department tree, roots first and children
 *       nested, each in name order with its head and active employees;
 *   the head of a user's department, the platform's directory question
 *       (tr_module.head_of, directory.h), and GET /v1/erp/employees/head-of
 *       asking it through the platform. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "directory.h"
#include "people.h"
#include "util.h"

/* Nesting deeper than this continues at the top level: the answer stays
 * a size every JSON reader takes, whatever the tenant stored. */
#define MAX_NEST 32
/* Departments a head-of question climbs before it gives up (a loop, which
 * people_tree.c never lets form, would end here too). */
#define MAX_CLIMB 256

/* ---- the chart ---- */

struct person {
	const char *id, *name, *key, *position, *manager_id, *department_id;
	int next; /* the next employee of the same department, in name order */
};

struct unit {
	const char *id, *name, *key, *parent_id, *head_id;
	int first_child, last_child, next_sibling;
	int first_staff, last_staff;
	bool shown;
};

struct chart {
	struct tr_ctx *c;
	struct unit *units;
	int nunits, capunits;
	struct person *people;
	int npeople, cappeople;
	int *unit_by_id, *person_by_id; /* indexes sorted by id */
};

static const char *
copy(struct chart *ch, const bson_t *doc, const char *field)
{
	const char *s = tr_doc_str(doc, field);
	return s ? tr_arena_strdup(ch->c->req->arena, s) : NULL;
}

static const char *
folded(struct chart *ch, const char *name)
{
	size_t cap = strlen(name) + 1;
	char *key = tr_arena_alloc(ch->c->req->arena, cap);

	if (key)
		erp_fold_name(name, key, cap);
	return key ? key : name;
}

static bool
grow(void **items, int *cap, int n, size_t size)
{
	if (n < *cap)
		return true;
	int more = *cap ? *cap * 2 : 64;
	void *p = realloc(*items, (size_t)more * size);
	if (!p)
		return false;
	*items = p;
	*cap = more;
	return true;
}

static int
add_unit(void *arg, const bson_t *department)
{
	struct chart *ch = arg;

	if (!grow((void **)&ch->units, &ch->capunits, ch->nunits, sizeof(*ch->units)))
		return TR_ENOMEM;
	struct unit *u = &ch->units[ch->nunits];
	memset(u, 0, sizeof(*u));
	u->id = copy(ch, department, "id");
	u->name = copy(ch, department, "name");
	u->parent_id = copy(ch, department, "parent_id");
	u->head_id = copy(ch, department, "head_id");
	if (!u->id || !u->name)
		return TR_OK; /* not a department as stored by people.c */
	u->key = folded(ch, u->name);
	u->first_child = u->last_child = u->next_sibling = -1;
	u->first_staff = u->last_staff = -1;
	ch->nunits++;
	return TR_OK;
}

static int
add_person(void *arg, const bson_t *employee)
{
	struct chart *ch = arg;

	if (!grow((void **)&ch->people, &ch->cappeople, ch->npeople, sizeof(*ch->people)))
		return TR_ENOMEM;
	struct person *p = &ch->people[ch->npeople];
	memset(p, 0, sizeof(*p));
	p->id = copy(ch, employee, "id");
	p->name = copy(ch, employee, "name");
	p->position = copy(ch, employee, "position");
	p->manager_id = copy(ch, employee, "manager_id");
	p->department_id = copy(ch, employee, "department_id");
	if (!p->id || !p->name)
		return TR_OK;
	p->key = folded(ch, p->name);
	p->next = -1;
	ch->npeople++;
	return TR_OK;
}

/* Name order: folded names, then the names as written, then ids. */
static int
by_name(const char *ka, const char *na, const char *ia, const char *kb, const char *nb,
	const char *ib)
{
	int d = strcmp(ka, kb);
	if (d == 0)
		d = strcmp(na, nb);
	return d ? d : strcmp(ia, ib);
}

static int
unit_order(const void *a, const void *b)
{
	const struct unit *x = a, *y = b;
	return by_name(x->key, x->name, x->id, y->key, y->name, y->id);
}

static int
person_order(const void *a, const void *b)
{
	const struct person *x = a, *y = b;
	return by_name(x->key, x->name, x->id, y->key, y->name, y->id);
}

/* Sorting indexes by id needs the chart: qsort_r is not in C11, so the
 * comparators read it from here (one chart per worker thread at a time). */
static _Thread_local const struct chart *sorting;

static int
unit_id_order(const void *a, const void *b)
{
	return strcmp(sorting->units[*(const int *)a].id, sorting->units[*(const int *)b].id);
}

static int
person_id_order(const void *a, const void *b)
{
	return strcmp(sorting->people[*(const int *)a].id, sorting->people[*(const int *)b].id);
}

static int
find_unit(const struct chart *ch, const char *id)
{
	int lo = 0, hi = ch->nunits - 1;

	while (id && lo <= hi) {
		int mid = lo + (hi - lo) / 2, i = ch->unit_by_id[mid];
		int d = strcmp(ch->units[i].id, id);
		if (d == 0)
			return i;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static int
find_person(const struct chart *ch, const char *id)
{
	int lo = 0, hi = ch->npeople - 1;

	while (id && lo <= hi) {
		int mid = lo + (hi - lo) / 2, i = ch->person_by_id[mid];
		int d = strcmp(ch->people[i].id, id);
		if (d == 0)
			return i;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* Sorts both by name, indexes them by id, and links children and staff
 * to their departments in name order. */
static bool
link_chart(struct chart *ch)
{
	/* qsort of nothing: its array may be NULL, which qsort may not take */
	if (ch->nunits > 1)
		qsort(ch->units, (size_t)ch->nunits, sizeof(*ch->units), unit_order);
	if (ch->npeople > 1)
		qsort(ch->people, (size_t)ch->npeople, sizeof(*ch->people), person_order);
	ch->unit_by_id = malloc(((size_t)ch->nunits + 1) * sizeof(int));
	ch->person_by_id = malloc(((size_t)ch->npeople + 1) * sizeof(int));
	if (!ch->unit_by_id || !ch->person_by_id)
		return false;
	for (int i = 0; i < ch->nunits; i++)
		ch->unit_by_id[i] = i;
	for (int i = 0; i < ch->npeople; i++)
		ch->person_by_id[i] = i;
	sorting = ch;
	if (ch->nunits > 1)
		qsort(ch->unit_by_id, (size_t)ch->nunits, sizeof(int), unit_id_order);
	if (ch->npeople > 1)
		qsort(ch->person_by_id, (size_t)ch->npeople, sizeof(int), person_id_order);
	sorting = NULL;
	for (int i = 0; i < ch->nunits; i++) {
		int p = find_unit(ch, ch->units[i].parent_id);
		if (p < 0 || p == i)
			continue;
		if (ch->units[p].last_child < 0)
			ch->units[p].first_child = i;
		else
			ch->units[ch->units[p].last_child].next_sibling = i;
		ch->units[p].last_child = i;
	}
	for (int i = 0; i < ch->npeople; i++) {
		int d = find_unit(ch, ch->people[i].department_id);
		if (d < 0)
			continue;
		if (ch->units[d].last_staff < 0)
			ch->units[d].first_staff = i;
		else
			ch->people[ch->units[d].last_staff].next = i;
		ch->units[d].last_staff = i;
	}
	return true;
}

static void
append_str_or_null(bson_t *doc, const char *name, const char *value)
{
	if (value)
		BSON_APPEND_UTF8(doc, name, value);
	else
		BSON_APPEND_NULL(doc, name);
}

static void
render_person(const struct person *p, bson_t *list, int *n)
{
	char idx[16];
	const char *k;
	bson_t doc;

	bson_uint32_to_string((uint32_t)(*n)++, &k, idx, sizeof(idx));
	BSON_APPEND_DOCUMENT_BEGIN(list, k, &doc);
	BSON_APPEND_UTF8(&doc, "id", p->id);
	BSON_APPEND_UTF8(&doc, "name", p->name);
	append_str_or_null(&doc, "position", p->position);
	append_str_or_null(&doc, "manager_id", p->manager_id);
	bson_append_document_end(list, &doc);
}

/* Department u into list as its n-th item, its sub-departments nested. */
static void
render_unit(struct chart *ch, int u, bson_t *list, int *n, int depth)
{
	struct unit *d = &ch->units[u];
	char idx[16];
	const char *k;
	bson_t doc, head, staff, children;
	int nstaff = 0, nchildren = 0;

	d->shown = true;
	bson_uint32_to_string((uint32_t)(*n)++, &k, idx, sizeof(idx));
	BSON_APPEND_DOCUMENT_BEGIN(list, k, &doc);
	BSON_APPEND_UTF8(&doc, "id", d->id);
	BSON_APPEND_UTF8(&doc, "name", d->name);
	append_str_or_null(&doc, "parent_id", d->parent_id);
	/* only an active employee heads a department on the chart */
	int h = find_person(ch, d->head_id);
	if (h >= 0) {
		BSON_APPEND_DOCUMENT_BEGIN(&doc, "head", &head);
		BSON_APPEND_UTF8(&head, "id", ch->people[h].id);
		BSON_APPEND_UTF8(&head, "name", ch->people[h].name);
		bson_append_document_end(&doc, &head);
	} else {
		BSON_APPEND_NULL(&doc, "head");
	}
	BSON_APPEND_ARRAY_BEGIN(&doc, "employees", &staff);
	for (int p = d->first_staff; p >= 0; p = ch->people[p].next)
		render_person(&ch->people[p], &staff, &nstaff);
	bson_append_array_end(&doc, &staff);
	BSON_APPEND_ARRAY_BEGIN(&doc, "children", &children);
	for (int s = d->first_child; depth + 1 < MAX_NEST && s >= 0; s = ch->units[s].next_sibling)
		if (!ch->units[s].shown)
			render_unit(ch, s, &children, &nchildren, depth + 1);
	bson_append_array_end(&doc, &children);
	bson_append_document_end(list, &doc);
}

static void
chart_free(struct chart *ch)
{
	free(ch->units);
	free(ch->people);
	free(ch->unit_by_id);
	free(ch->person_by_id);
}

void
erp_org_chart(struct tr_ctx *c)
{
	struct chart ch = {.c = c};
	bson_t active = BSON_INITIALIZER, body = BSON_INITIALIZER, list, loose;
	int rc, n = 0, nloose = 0;

	BSON_APPEND_BOOL(&active, "active", true);
	rc = tr_db_each(c->db, ERP_DEPARTMENTS, NULL, add_unit, &ch);
	if (rc == TR_OK)
		rc = tr_db_each(c->db, ERP_EMPLOYEES, &active, add_person, &ch);
	if (rc == TR_OK && !link_chart(&ch))
		rc = TR_ENOMEM;
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_ARRAY_BEGIN(&body, "departments", &list);
	/* roots: no parent, or one that is gone */
	for (int u = 0; u < ch.nunits; u++)
		if (find_unit(&ch, ch.units[u].parent_id) < 0)
			render_unit(&ch, u, &list, &n, 0);
	/* then what nesting left out: departments deeper than MAX_NEST, or
	 * in a loop that was stored before loops were refused */
	for (int u = 0; u < ch.nunits; u++)
		if (!ch.units[u].shown)
			render_unit(&ch, u, &list, &n, 0);
	bson_append_array_end(&body, &list);
	BSON_APPEND_ARRAY_BEGIN(&body, "unassigned", &loose);
	for (int p = 0; p < ch.npeople; p++)
		if (find_unit(&ch, ch.people[p].department_id) < 0)
			render_person(&ch.people[p], &loose, &nloose);
	bson_append_array_end(&body, &loose);
	tr_reply_json(c, 200, &body);
out:
	chart_free(&ch);
	bson_destroy(&active);
	bson_destroy(&body);
}

/* ---- the head of a user's department ---- */

static bool
is_active(const bson_t *doc)
{
	bson_iter_t it;

	return bson_iter_init_find(&it, doc, "active") && BSON_ITER_HOLDS_BOOL(&it) &&
	       bson_iter_bool(&it);
}

/* The head of department `unit` if one can act: an active employee other
 * than `me`, with a user of the tenant who is active and not `user`.
 * TR_OK with out set, TR_ENOTFOUND when not, or another TR_E* code. */
static int
acting_head(struct tr_db *db, const bson_t *unit, const bson_oid_t *me, const bson_oid_t *user,
	    char out[25])
{
	bson_oid_t head_id, head_user;
	bson_t head = BSON_INITIALIZER, account = BSON_INITIALIZER;
	char hex[25];
	int rc = TR_ENOTFOUND;

	if (!tr_doc_oid(unit, "head_id", &head_id) || bson_oid_equal(&head_id, me))
		goto out;
	bson_oid_to_string(&head_id, hex);
	bson_destroy(&head);
	if ((rc = tr_db_get(db, ERP_EMPLOYEES, hex, &head)) != TR_OK)
		goto out;
	rc = TR_ENOTFOUND;
	if (!is_active(&head) || !tr_doc_oid(&head, "user_id", &head_user) ||
	    bson_oid_equal(&head_user, user))
		goto out;
	bson_oid_to_string(&head_user, hex);
	bson_destroy(&account);
	if ((rc = tr_db_get(db, ERP_USERS, hex, &account)) != TR_OK)
		goto out;
	if (!is_active(&account)) {
		rc = TR_ENOTFOUND;
		goto out;
	}
	memcpy(out, hex, 25);
out:
	bson_destroy(&head);
	bson_destroy(&account);
	return rc;
}

int
erp_head_of(struct tr_db *db, const char *user_hex, char out_user_hex[25])
{
	bson_t filter = BSON_INITIALIZER, me = BSON_INITIALIZER, unit = BSON_INITIALIZER;
	bson_oid_t user, my_id, at;
	char hex[25];
	int rc = TR_ENOTFOUND;

	out_user_hex[0] = '\0';
	if (!tr_is_object_id(user_hex))
		goto out;
	bson_oid_init_from_string(&user, user_hex);
	BSON_APPEND_OID(&filter, "user_id", &user);
	bson_destroy(&me);
	if ((rc = tr_db_find_one(db, ERP_EMPLOYEES, &filter, &me)) != TR_OK)
		goto out;
	rc = TR_ENOTFOUND;
	if (!is_active(&me) || !tr_doc_oid(&me, "_id", &my_id) ||
	    !tr_doc_oid(&me, "department_id", &at))
		goto out;
	/* up from the user's own department until someone can act */
	for (int climbed = 0; climbed < MAX_CLIMB; climbed++) {
		bson_oid_to_string(&at, hex);
		bson_destroy(&unit);
		if ((rc = tr_db_get(db, ERP_DEPARTMENTS, hex, &unit)) != TR_OK)
			break;
		rc = acting_head(db, &unit, &my_id, &user, out_user_hex);
		if (rc != TR_ENOTFOUND)
			break;
		if (!tr_doc_oid(&unit, "parent_id", &at))
			break;
	}
out:
	bson_destroy(&filter);
	bson_destroy(&me);
	bson_destroy(&unit);
	if (rc != TR_OK)
		out_user_hex[0] = '\0';
	return rc;
}

void
erp_head_of_route(struct tr_ctx *c)
{
	const char *user = tr_query(c, "user_id");
	bson_t filter = BSON_INITIALIZER, head = BSON_INITIALIZER, body = BSON_INITIALIZER;
	bson_oid_t head_user, head_id;
	char hex[25], employee[25];
	int rc;

	if (!tr_is_object_id(user)) {
		tr_problem_field(c, "user_id", "must be an id");
		goto out;
	}
	/* through the platform, as the BPM asks */
	rc = tr_directory_head_of(c->db, user, hex);
	if (rc == TR_OK) {
		bson_oid_init_from_string(&head_user, hex);
		BSON_APPEND_OID(&filter, "user_id", &head_user);
		bson_destroy(&head);
		rc = tr_db_find_one(c->db, ERP_EMPLOYEES, &filter, &head);
		if (rc == TR_OK && !tr_doc_oid(&head, "_id", &head_id))
			rc = TR_ENOTFOUND;
	}
	if (rc == TR_ENOTFOUND) {
		tr_problem(c, 404, "not-found",
			   "no one heads this user's department or a department above it");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	bson_oid_to_string(&head_id, employee);
	BSON_APPEND_UTF8(&body, "user_id", hex);
	BSON_APPEND_UTF8(&body, "employee_id", employee);
	tr_reply_json(c, 200, &body);
out:
	bson_destroy(&filter);
	bson_destroy(&head);
	bson_destroy(&body);
}
