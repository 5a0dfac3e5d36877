/* The demo company's people (demo.h): a department tree and an employee
 * for each demo user, made through the ERP's routes (erp_direct) like the
 * rest of its story.
 *
 *   Management (Helen Carter, owner)
 *     Sales (Maria Lopez, manager): the three sales reps
 *     Finance (Anna Kowalski, accountant)
 *     Operations (Adam Novak, admin)
 *       Warehouse (Walter Hughes): Eric Dunn
 *
 * Each employee's manager is their department's head (a head's, the head
 * of the department above), so "the requester's head of department" has
 * an answer for every user but the owner. */
#include <stdio.h>
#include <string.h>

#include "demo.h"
#include "erp/erp.h"

enum { D_MANAGEMENT, D_SALES, D_FINANCE, D_OPERATIONS, D_WAREHOUSE, NDEPTS };

static const struct {
	const char *name;
	int parent; /* -1: a root */
	int head;   /* a demo user */
} depts[NDEPTS] = {
    {"Management", -1, U_OWNER},
    {"Sales", D_MANAGEMENT, U_MANAGER},
    {"Finance", D_MANAGEMENT, U_ACCOUNTANT},
    {"Operations", D_MANAGEMENT, U_ADMIN},
    {"Warehouse", D_OPERATIONS, U_WAREHOUSE},
};

static const struct {
	int dept;
	const char *position;
	const char *hired_on;
} staff[NUSERS] = {
    [U_OWNER] = {D_MANAGEMENT, "Managing director", "2014-03-01"},
    [U_ADMIN] = {D_OPERATIONS, "Head of operations and IT", "2016-09-15"},
    [U_MANAGER] = {D_SALES, "Head of sales", "2017-01-09"},
    [U_SALES1] = {D_SALES, "Account executive", "2019-05-06"},
    [U_SALES2] = {D_SALES, "Account executive", "2021-02-01"},
    [U_SALES3] = {D_SALES, "Sales representative", "2024-08-19"},
    [U_WAREHOUSE] = {D_WAREHOUSE, "Warehouse lead", "2018-04-03"},
    [U_ACCOUNTANT] = {D_FINANCE, "Accountant", "2020-10-12"},
    [U_EMPLOYEE] = {D_WAREHOUSE, "Warehouse clerk", "2023-06-26"},
};

static int
call(struct demo *d, struct tr_db *db, const char *route, const char *id, const bson_t *body,
     int want, char out_id[25])
{
	bson_t answer;
	int status =
	    erp_direct(db, &d->tenant_id, &d->users[U_ADMIN], route, id, body, NULL, &answer);
	const char *got = tr_doc_str(&answer, "id");

	if (status == want && out_id && got && strlen(got) == 24)
		memcpy(out_id, got, 25);
	if (status != want)
		fprintf(stderr, "trellis: the ERP answered %s with %d: %s\n", route, status,
			tr_doc_str(&answer, "detail") ? tr_doc_str(&answer, "detail") : "");
	bson_destroy(&answer);
	return status == want ? TR_OK : status == 503 ? TR_EUNAVAILABLE : TR_EINTERNAL;
}

int
crm_demo_make_people(struct demo *d, struct tr_db *db)
{
	char dept_id[NDEPTS][25], emp_id[NUSERS][25];
	int rc = TR_OK;

	for (int k = 0; k < NDEPTS && rc == TR_OK; k++) {
		bson_t body = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&body, "name", depts[k].name);
		if (depts[k].parent >= 0)
			BSON_APPEND_UTF8(&body, "parent_id", dept_id[depts[k].parent]);
		rc = call(d, db, "POST /v1/erp/departments", NULL, &body, 201, dept_id[k]);
		bson_destroy(&body);
	}
	/* heads first, so everyone's manager exists when they are hired */
	for (int pass = 0; pass < 2 && rc == TR_OK; pass++)
		for (int u = 0; u < NUSERS && rc == TR_OK; u++) {
			int k = staff[u].dept;
			bool head = depts[k].head == u;
			if (head != (pass == 0))
				continue;
			bson_t body = BSON_INITIALIZER;
			char email[128], user[25];
			crm_demo_cast_email(d, u, email, sizeof(email));
			bson_oid_to_string(&d->users[u], user);
			BSON_APPEND_UTF8(&body, "name", crm_demo_cast_name(u));
			BSON_APPEND_UTF8(&body, "email", email);
			BSON_APPEND_UTF8(&body, "department_id", dept_id[k]);
			BSON_APPEND_UTF8(&body, "position", staff[u].position);
			BSON_APPEND_UTF8(&body, "user_id", user);
			BSON_APPEND_UTF8(&body, "hired_on", staff[u].hired_on);
			/* a head answers to the head above; others to their own */
			int boss = head ? (depts[k].parent >= 0 ? depts[depts[k].parent].head : -1)
					: depts[k].head;
			if (boss >= 0)
				BSON_APPEND_UTF8(&body, "manager_id", emp_id[boss]);
			rc = call(d, db, "POST /v1/erp/employees", NULL, &body, 201, emp_id[u]);
			bson_destroy(&body);
		}
	for (int k = 0; k < NDEPTS && rc == TR_OK; k++) {
		bson_t body = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&body, "head_id", emp_id[depts[k].head]);
		rc = call(d, db, "PATCH /v1/erp/departments/{id}", dept_id[k], &body, 200, NULL);
		bson_destroy(&body);
	}
	return rc;
}
