/* People in the ERP (issue 12, "People"): departments, employees, the org
 * chart, and the directory question the platform asks of them.
 *
 * people.c: departments and employees, declarations on the resource
 * engine with hooks for what a table cannot say (names unique whatever
 * their case, one employee per user, left_on not before hired_on).
 * people_tree.c: the two hierarchies (a department's parent_id, an
 * employee's manager_id) never close a loop, in any process.
 * org_chart.c: GET /v1/erp/org-chart, and the head of a user's department
 * (tr_module.head_of; GET /v1/erp/employees/head-of).
 *
 * A department's name is unique in the tenant by its folded form, stored
 * as "_name_key" under a unique index. An employee's "_user_key" is
 * "u:<user id>" while it names a user and "e:<its own id>" otherwise, so
 * that one unique index holds every employee and refuses a second one of
 * the same user (FerretDB has no partial or sparse indexes). Fields with
 * a leading underscore never leave the server. */
#ifndef TR_ERP_PEOPLE_H
#define TR_ERP_PEOPLE_H

#include <stdbool.h>
#include <stddef.h>

#include <bson/bson.h>

#include "resource.h"

#define ERP_DEPARTMENTS "erp_departments"
#define ERP_EMPLOYEES "erp_employees"
#define ERP_HR_TREES "erp_hr_trees" /* people_tree.c: recent moves per tree */
#define ERP_USERS "users"	    /* the identity module's users */

extern const struct tr_resource erp_departments, erp_employees;

/* name folded for comparison into out (at most cap bytes with the NUL):
 * surrounding white space dropped, inner runs of it made one space, and
 * letters in lower case - ASCII, Latin-1, Latin Extended-A, Greek and
 * Cyrillic capitals (others unchanged). "  Sales  EMEA" and "sales emea"
 * fold alike. Pure. */
void erp_fold_name(const char *name, char *out, size_t cap);

/* A hierarchy of records of one collection, each naming its parent in
 * `field` (people_tree.c). */
struct erp_tree {
	const char *name;  /* "departments": the guard record's key */
	const char *coll;  /* the records */
	const char *field; /* "parent_id" */
};
extern const struct erp_tree erp_department_tree, erp_manager_tree;

/* May record node (as loaded, `old`; its name after the change `name`)
 * take parent? False after a 422 on t->field naming the loop it would
 * close ("Sales -> EMEA -> Sales"), or another problem. Exact across
 * processes: see people_tree.c. */
bool erp_tree_may_move(struct tr_ctx *c, const struct erp_tree *t, const bson_t *old,
		       const char *name, const bson_oid_t *parent);

void erp_org_chart(struct tr_ctx *c);
void erp_head_of_route(struct tr_ctx *c);
/* tr_module.head_of (module.h). */
int erp_head_of(struct tr_db *db, const char *user_hex, char out_user_hex[25]);

#endif
