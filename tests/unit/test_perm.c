/* Permissions: the check every route's authorization goes through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "perm.h"

static void
test_exact_permission_is_granted_without_own_limit(void **state)
{
	bool own = true;

	(void)state;
	assert_true(
	    tr_permission_check("system.tags.read system.tags.write", "system.tags.write", &own));
	assert_false(own);
}

static void
test_own_form_grants_with_own_limit(void **state)
{
	bool own = false;

	(void)state;
	assert_true(tr_permission_check("crm.leads.read:own", "crm.leads.read", &own));
	assert_true(own);
}

static void
test_full_form_wins_over_own_form(void **state)
{
	bool own = true;

	(void)state;
	assert_true(
	    tr_permission_check("crm.leads.read:own crm.leads.read", "crm.leads.read", &own));
	assert_false(own);
}

static void
test_missing_permission_is_refused(void **state)
{
	bool own = true;

	(void)state;
	assert_false(tr_permission_check("system.tags.read", "system.tags.write", &own));
	assert_false(own);
	assert_false(tr_permission_check("", "system.tags.read", &own));
}

static void
test_prefix_of_a_permission_is_not_the_permission(void **state)
{
	bool own;

	(void)state;
	assert_false(
	    tr_permission_check("system.tags.readx system.tags", "system.tags.read", &own));
	assert_false(tr_permission_check("system.tags.read:ownx", "system.tags.read", &own));
}

static void
test_catalogue_validates_names_with_and_without_own(void **state)
{
	(void)state;
	assert_true(tr_permission_valid("crm.leads.read"));
	assert_true(tr_permission_valid("crm.leads.read:own"));
	assert_false(tr_permission_valid("crm.leads.fly"));
	assert_false(tr_permission_valid("crm.leads.read:mine"));
	assert_false(tr_permission_valid(""));
}

static void
test_builtin_roles_are_seven_and_owner_has_everything(void **state)
{
	(void)state;
	assert_int_equal(tr_builtin_role_count(), 7);
	assert_null(tr_builtin_role("owner")->permissions);
	assert_null(tr_builtin_role("admin")->permissions);
	assert_non_null(tr_builtin_role("sales")->permissions);
	assert_null(tr_builtin_role("superuser"));
	for (size_t i = 0; i < tr_builtin_role_count(); i++)
		for (const char *const *p = tr_builtin_role_at(i)->permissions; p && *p; p++)
			assert_true(tr_permission_valid(*p));
}

static void
test_role_names_are_short_lowercase_words(void **state)
{
	(void)state;
	assert_true(tr_role_name_valid("field-sales_2"));
	assert_false(tr_role_name_valid("x"));
	assert_false(tr_role_name_valid("Sales"));
	assert_false(tr_role_name_valid("a b"));
	assert_false(tr_role_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void
test_topics_are_found_by_exact_name_only(void **state)
{
	(void)state;
	assert_int_equal(tr_topic_find("admin.users", 11), 0);
	assert_true(tr_topic_find("crm.leads", 9) > 0);
	assert_int_equal(tr_topic_find("crm.lead", 8), -1);
	assert_int_equal(tr_topic_find("crm.leadsx", 10), -1);
	assert_int_equal(tr_topic_find("crm.leads", 8), -1); /* a prefix of the text */
	assert_int_equal(tr_topic_find("", 0), -1);
}

static void
test_admin_users_needs_all_three_read_permissions(void **state)
{
	bool own = true;
	int t = tr_topic_find("admin.users", 11);

	(void)state;
	assert_false(tr_topic_may_read("system.users.read", t, &own));
	assert_false(tr_topic_may_read("system.users.read system.roles.read", t, &own));
	assert_true(
	    tr_topic_may_read("system.users.read system.roles.read system.api_keys.read", t, &own));
	assert_false(own);
}

static void
test_own_read_permission_subscribes_with_the_own_limit(void **state)
{
	bool own = false;
	int t = tr_topic_find("crm.leads", 9);

	(void)state;
	assert_true(tr_topic_may_read("crm.leads.read:own", t, &own));
	assert_true(own);
	assert_true(tr_topic_may_read("crm.leads.read", t, &own));
	assert_false(own);
	assert_false(tr_topic_may_read("crm.deals.read", t, &own));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exact_permission_is_granted_without_own_limit),
	    cmocka_unit_test(test_own_form_grants_with_own_limit),
	    cmocka_unit_test(test_full_form_wins_over_own_form),
	    cmocka_unit_test(test_missing_permission_is_refused),
	    cmocka_unit_test(test_prefix_of_a_permission_is_not_the_permission),
	    cmocka_unit_test(test_catalogue_validates_names_with_and_without_own),
	    cmocka_unit_test(test_builtin_roles_are_seven_and_owner_has_everything),
	    cmocka_unit_test(test_role_names_are_short_lowercase_words),
	    cmocka_unit_test(test_topics_are_found_by_exact_name_only),
	    cmocka_unit_test(test_admin_users_needs_all_three_read_permissions),
	    cmocka_unit_test(test_own_read_permission_subscribes_with_the_own_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
