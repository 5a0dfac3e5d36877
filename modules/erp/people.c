/* Departments and employees (people.h): declarations on the resource
 * engine, and hooks for the rules a table cannot say.
 *
 * A department is deleted only while nothing hangs below it: no
 * sub-department, no active employee (409 naming them). An employee is
 * never deleted: DELETE deactivates (active false; org charts, heads and
 * managers elsewhere keep naming the record), and a user's deactivation
 * leaves their employee as it is. */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "people.h"

/* ---- names folded for comparison ---- */

/* The code point at *p (advancing it), or the byte itself when it starts
 * no well-formed sequence. */
static unsigned
next_code_point(const unsigned char **p)
{
	const unsigned char *s = *p;
	unsigned cp;
	int more;

	if (s[0] < 0x80) {
		*p = s + 1;
		return s[0];
	}
	if ((s[0] & 0xE0) == 0xC0)
		cp = s[0] & 0x1F, more = 1;
	else if ((s[0] & 0xF0) == 0xE0)
		cp = s[0] & 0x0F, more = 2;
	else if ((s[0] & 0xF8) == 0xF0)
		cp = s[0] & 0x07, more = 3;
	else
		more = -1;
	for (int i = 1; more > 0 && i <= more; i++) {
		if ((s[i] & 0xC0) != 0x80) {
			more = -1;
			break;
		}
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (more < 0) {
		*p = s + 1;
		return s[0];
	}
	*p = s + 1 + more;
	return cp;
}

static size_t
put_code_point(unsigned cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* The small letter of a capital in the scripts people.h names. */
static unsigned
lower(unsigned cp)
{
	if (cp >= 'A' && cp <= 'Z')
		return cp + 32;
	if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) /* Latin-1 */
		return cp + 32;
	if (cp == 0x178) /* Y with diaeresis: its small letter is Latin-1's */
		return 0xFF;
	/* Latin Extended-A: capitals even, small letters odd, except
	 * 0139..0148 and 0179..017E the other way round (0130 and 0131, the
	 * dotted and dotless i, are left as they are) */
	if ((cp >= 0x100 && cp <= 0x12F) || (cp >= 0x132 && cp <= 0x137) ||
	    (cp >= 0x14A && cp <= 0x177))
		return cp % 2 == 0 ? cp + 1 : cp;
	if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
		return cp % 2 == 1 ? cp + 1 : cp;
	if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) /* Greek */
		return cp + 32;
	if (cp == 0x386)
		return 0x3AC;
	if (cp >= 0x388 && cp <= 0x38A)
		return cp + 37;
	if (cp == 0x38C)
		return 0x3CC;
	if (cp == 0x38E || cp == 0x38F)
		return cp + 63;
	if (cp >= 0x410 && cp <= 0x42F) /* Cyrillic */
		return cp + 32;
	if (cp >= 0x400 && cp <= 0x40F)
		return cp + 80;
	return cp;
}

void
erp_fold_name(const char *name, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t n = 0;
	bool space = false;

	if (cap == 0)
		return;
	while (*p) {
		unsigned cp = next_code_point(&p);
		if (cp == ' ' || cp == 0xA0 || cp == '\t') {
			space = n > 0;
			continue;
		}
		char buf[5];
		size_t len = put_code_point(lower(cp), buf);
		if (n + (space ? 1 : 0) + len + 1 > cap)
			break;
		if (space)
			out[n++] = ' ';
		space = false;
		memcpy(out + n, buf, len);
		n += len;
	}
	out[n] = '\0';
}

/* ---- shared by both hooks ---- */

/* The value of field after a change: set's when set has it, else old's;
 * NULL when neither has it or it is null. */
static const bson_value_t *
value_after(const bson_t *set, const bson_t *old, const char *field, bson_iter_t *it)
{
	const bson_t *doc = bson_has_field(set, field) ? set : old;

	if (!doc || !bson_iter_init_find(it, doc, field) || BSON_ITER_HOLDS_NULL(it))
		return NULL;
	return bson_iter_value(it);
}

/* Does set give field an id other than the one old holds? *id is it. */
static bool
moves_to(const bson_t *set, const bson_t *old, const char *field, bson_oid_t *id)
{
	bson_oid_t was;

	if (!tr_doc_oid(set, field, id))
		return false;
	return !old || !tr_doc_oid(old, field, &was) || !bson_oid_equal(id, &was);
}

/* An employee set as someone's head or manager is one who has not left. */
static bool
active_employee(struct tr_ctx *c, const char *field, const bson_oid_t *id)
{
	char hex[25];
	bson_t employee;
	bson_iter_t it;
	int rc;

	bson_oid_to_string(id, hex);
	rc = tr_db_get(c->db, ERP_EMPLOYEES, hex, &employee);
	bool active = rc == TR_OK && bson_iter_init_find(&it, &employee, "active") &&
		      BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
	bson_destroy(&employee);
	if (rc != TR_OK && rc != TR_ENOTFOUND) {
		tr_problem_from_err(c, rc);
		return false;
	}
	if (!active)
		tr_problem_field(c, field, "names an employee who is not active");
	return active;
}

/* The name after the change, for messages naming a loop. */
static const char *
name_after(struct tr_ctx *c, const bson_t *set, const bson_t *old)
{
	const char *name = tr_doc_str(set, "name");

	if (!name)
		name = tr_doc_str(old, "name");
	return tr_arena_strdup(c->req->arena, name ? name : "?");
}

/* ---- departments ---- */

static const char *const department_sorts[] = {"name", "-created_at", "created_at", NULL};

static const struct tr_field department_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"parent_id", TR_K_REF, TR_F_FILTER | TR_F_NULLABLE, 0, 0, NULL, ERP_DEPARTMENTS},
    {"head_id", TR_K_REF, TR_F_FILTER | TR_F_NULLABLE, 0, 0, NULL, ERP_EMPLOYEES},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
department_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *name = tr_doc_str(set, "name");
	bson_oid_t parent, head;

	(void)e;
	if (name) {
		char key[4 * 200 + 1];
		erp_fold_name(name, key, sizeof(key));
		if (!key[0]) {
			tr_problem_field(c, "name", "must not be blank");
			return false;
		}
		BSON_APPEND_UTF8(set, "_name_key", key);
	}
	if (moves_to(set, old, "head_id", &head) && !active_employee(c, "head_id", &head))
		return false;
	/* a new department has an id no one names yet: it closes no loop */
	if (old && moves_to(set, old, "parent_id", &parent) &&
	    !erp_tree_may_move(c, &erp_department_tree, old, name_after(c, set, old), &parent))
		return false;
	return true;
}

/* Only an empty department goes: nothing below it, no one in it. */
static bool
department_may_delete(struct tr_ctx *c, const bson_t *stored)
{
	bson_t below = BSON_INITIALIZER, members = BSON_INITIALIZER;
	bson_oid_t id;
	long long children = 0, staff = 0;
	int rc = TR_EINTERNAL;

	if (tr_doc_oid(stored, "_id", &id)) {
		BSON_APPEND_OID(&below, "parent_id", &id);
		BSON_APPEND_OID(&members, "department_id", &id);
		BSON_APPEND_BOOL(&members, "active", true);
		rc = tr_db_count(c->db, ERP_DEPARTMENTS, &below, &children);
		if (rc == TR_OK)
			rc = tr_db_count(c->db, ERP_EMPLOYEES, &members, &staff);
	}
	bson_destroy(&below);
	bson_destroy(&members);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	if (children == 0 && staff == 0)
		return true;
	char *m = tr_arena_alloc(c->req->arena, 160);
	if (m)
		snprintf(m, 160,
			 "the department has %lld sub-department%s and %lld active employee%s: "
			 "move them first",
			 children, children == 1 ? "" : "s", staff, staff == 1 ? "" : "s");
	tr_problem(c, 409, "conflict", m ? m : "the department is not empty");
	return false;
}

const struct tr_resource erp_departments = {
    .name = "department",
    .coll = ERP_DEPARTMENTS,
    .path = "/v1/erp/departments",
    .read = "erp.hr.read",
    .write = "erp.hr.write",
    .about = "A part of the organisation: its name is unique in the tenant whatever its case "
	     "(409); parent_id places it under another (a loop is 422), head_id names the "
	     "active employee who heads it. DELETE removes an empty department only (409 while "
	     "sub-departments or active employees remain).",
    .topic = "erp.hr",
    .event = "erp.department",
    .fields = department_fields,
    .sorts = department_sorts,
    .hook = department_hook,
    .may_delete = department_may_delete,
    .deletable = true,
};

/* ---- employees ---- */

static const char *const employee_sorts[] = {"name", "-created_at", "created_at", NULL};

static const struct tr_field employee_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"email", TR_K_EMAIL, TR_F_NULLABLE, 3, 254, NULL, NULL},
    {"department_id", TR_K_REF, TR_F_FILTER | TR_F_NULLABLE, 0, 0, NULL, ERP_DEPARTMENTS},
    {"position", TR_K_LINE, TR_F_NULLABLE, 1, 200, NULL, NULL},
    {"manager_id", TR_K_REF, TR_F_FILTER | TR_F_NULLABLE, 0, 0, NULL, ERP_EMPLOYEES},
    {"user_id", TR_K_REF, TR_F_FILTER | TR_F_NARROW | TR_F_NULLABLE, 0, 0, NULL, ERP_USERS},
    {"hired_on", TR_K_DATE, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"left_on", TR_K_DATE, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"active", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
employee_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_oid_t id, manager, user;
	bson_iter_t hi, li;
	char hex[25], key[32];
	bool ok = true;

	(void)e;
	if (!old) {
		/* chosen here, so that the user key can name it */
		bson_oid_init(&id, NULL);
		BSON_APPEND_OID(set, "_id", &id);
		if (!bson_has_field(set, "active"))
			BSON_APPEND_BOOL(set, "active", true);
	} else if (!tr_doc_oid(old, "_id", &id)) {
		tr_problem_from_err(c, TR_EINTERNAL);
		return false;
	}
	const bson_value_t *hired = value_after(set, old, "hired_on", &hi);
	const bson_value_t *left = value_after(set, old, "left_on", &li);
	if (hired && left && hired->value_type == BSON_TYPE_UTF8 &&
	    left->value_type == BSON_TYPE_UTF8 &&
	    strcmp(left->value.v_utf8.str, hired->value.v_utf8.str) < 0) {
		tr_problem_field(c, bson_has_field(set, "left_on") ? "left_on" : "hired_on",
				 "left_on must not be before hired_on");
		ok = false;
	}
	if (ok && moves_to(set, old, "manager_id", &manager)) {
		if (bson_oid_equal(&manager, &id)) {
			char *m = tr_arena_alloc(c->req->arena, 512);
			const char *name = name_after(c, set, old);
			if (m)
				snprintf(m, 512, "would close a loop: %s -> %s", name, name);
			tr_problem_field(c, "manager_id", m ? m : "would close a loop");
			return false;
		}
		if (!active_employee(c, "manager_id", &manager))
			return false;
		if (old && !erp_tree_may_move(c, &erp_manager_tree, old, name_after(c, set, old),
					      &manager))
			return false;
	}
	if (!ok)
		return false;
	/* one employee per user: the unique key names the user, or the
	 * employee itself when it names none */
	if (!old || bson_has_field(set, "user_id")) {
		if (tr_doc_oid(set, "user_id", &user)) {
			bson_oid_to_string(&user, hex);
			snprintf(key, sizeof(key), "u:%s", hex);
		} else {
			bson_oid_to_string(&id, hex);
			snprintf(key, sizeof(key), "e:%s", hex);
		}
		BSON_APPEND_UTF8(set, "_user_key", key);
	}
	return true;
}

const struct tr_resource erp_employees = {
    .name = "employee",
    .coll = ERP_EMPLOYEES,
    .path = "/v1/erp/employees",
    .read = "erp.hr.read",
    .write = "erp.hr.write",
    .about = "Someone who works for the tenant: in a department, reporting to a manager (a "
	     "loop is 422), perhaps a user of the tenant (one employee per user: 409). Dates "
	     "are days (left_on not before hired_on). DELETE deactivates; deactivating the "
	     "user keeps the employee.",
    .topic = "erp.hr",
    .event = "erp.employee",
    .fields = employee_fields,
    .sorts = employee_sorts,
    .hook = employee_hook,
    .retire = "active",
};
