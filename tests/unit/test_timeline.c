// unit-under-test: server/data/timeline.c
/* A client's timeline: the order its pages follow, the bound each kind is
 * listed from, the cursor, and the kinds the modules declare. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../server/data/timeline.c"

static bson_oid_t
oid_of(const char *hex)
{
	bson_oid_t id;
	bson_oid_init_from_string(&id, hex);
	return id;
}

static struct timeline_item
item(int64_t at, const char *kind, const char *hex)
{
	struct timeline_item e = {.at = at, .kind = kind, .id = oid_of(hex), .shown = NULL};
	return e;
}

static void
test_order_is_newest_first_then_kind_by_name_then_larger_id(void **state)
{
	struct timeline_item all[] = {
	    item(1000, "order", "000000000000000000000001"),
	    item(2000, "deal", "000000000000000000000001"),
	    item(1000, "interaction", "000000000000000000000002"),
	    item(1000, "interaction", "00000000000000000000000a"),
	    item(3000, "claim", "000000000000000000000001"),
	};
	const char *want[][2] = {{"claim", "000000000000000000000001"},
				 {"deal", "000000000000000000000001"},
				 {"interaction", "00000000000000000000000a"},
				 {"interaction", "000000000000000000000002"},
				 {"order", "000000000000000000000001"}};
	char hex[25];

	(void)state;
	qsort(all, 5, sizeof(all[0]), item_cmp);
	for (int i = 0; i < 5; i++) {
		bson_oid_to_string(&all[i].id, hex);
		assert_string_equal(all[i].kind, want[i][0]);
		assert_string_equal(hex, want[i][1]);
	}
}

/* For every item of a small grid, tr_timeline_after agrees with the bound
 * tr_timeline_query gives its kind's list ((at, id) below it, descending),
 * and with the whole order: an item is past the cursor exactly when it
 * sorts after the cursor's item. */
static void
test_each_kinds_bound_lists_exactly_what_follows_the_cursor(void **state)
{
	static const char *const kinds[] = {"deal", "interaction", "order"};
	static const char *const ids[] = {"000000000000000000000001", "000000000000000000000005",
					  "00000000000000000000000f"};
	struct tr_timeline_window w = {.limit = 3, .has_after = true, .after_at = 2000};
	struct timeline_item cursor = item(2000, "interaction", ids[1]);
	struct tr_list_query q;

	(void)state;
	memcpy(w.after_kind, "interaction", sizeof("interaction"));
	w.after_id = cursor.id;
	for (int64_t at = 1000; at <= 3000; at += 1000)
		for (size_t k = 0; k < 3; k++)
			for (size_t i = 0; i < 3; i++) {
				struct timeline_item e = item(at, kinds[k], ids[i]);
				bool after = tr_timeline_after(&w, e.kind, e.at, &e.id);
				assert_int_equal(after, item_cmp(&e, &cursor) > 0);
				tr_timeline_query(&w, e.kind, "created_at", &q);
				assert_true(q.has_after && q.direction == -1 && q.limit == 3 &&
					    q.narrow);
				assert_string_equal(q.sort_field, "created_at");
				assert_int_equal(q.after_value.value_type, BSON_TYPE_DATE_TIME);
				int64_t bound = q.after_value.value.v_datetime;
				bool listed =
				    e.at < bound ||
				    (e.at == bound && bson_oid_compare(&e.id, &q.after_id) < 0);
				assert_int_equal(listed, after);
			}
	w.has_after = false;
	tr_timeline_query(&w, "order", "at", &q);
	assert_false(q.has_after);
	assert_true(tr_timeline_after(&w, "order", 0, &cursor.id));
}

static void
test_a_cursor_names_the_last_item_and_nothing_else_passes(void **state)
{
	struct timeline_item last = item(1766000000123, "invoice", "6b10aaaabbbbccccddddeeee");
	struct tr_timeline_window w;
	char *text = encode_cursor(&last), *other;
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	memset(&w, 0, sizeof(w));
	assert_non_null(text);
	assert_true(decode_cursor(text, &w));
	assert_true(w.has_after && w.after_at == last.at);
	assert_string_equal(w.after_kind, "invoice");
	assert_true(bson_oid_equal(&w.after_id, &last.id));
	free(text);

	assert_false(decode_cursor("", &w));
	assert_false(decode_cursor("not a cursor", &w));
	assert_false(decode_cursor("AAAA", &w));
	/* a list's cursor (dblist.c) has other members */
	BSON_APPEND_UTF8(&doc, "s", "created_at");
	BSON_APPEND_INT32(&doc, "d", -1);
	BSON_APPEND_OID(&doc, "i", &last.id);
	other = tr_b64url_encode(bson_get_data(&doc), doc.len);
	assert_false(decode_cursor(other, &w));
	free(other);
	/* a kind no shorter than the window holds */
	bson_reinit(&doc);
	BSON_APPEND_DATE_TIME(&doc, "a", 1);
	BSON_APPEND_UTF8(&doc, "k", "abcdefghijklmnopqrstuvwxyz012345");
	BSON_APPEND_OID(&doc, "i", &last.id);
	other = tr_b64url_encode(bson_get_data(&doc), doc.len);
	assert_false(decode_cursor(other, &w));
	free(other);
	bson_destroy(&doc);
}

static const struct tr_timeline_kind two[] = {{"order", NULL, NULL}, {"invoice", NULL, NULL}};
static const struct tr_timeline declared = {two, 2, NULL};

static void
test_a_module_adds_only_the_kinds_it_declared(void **state)
{
	struct tr_timeline_items out = {.from = &declared};
	bson_oid_t id = oid_of("6b10aaaabbbbccccddddeeee");
	bson_t shown = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_UTF8(&shown, "status", "open");
	assert_int_equal(tr_timeline_add(&out, "invoice", &id, 5, &shown), TR_OK);
	assert_int_equal(tr_timeline_add(&out, "deal", &id, 5, &shown), TR_EINVALID);
	assert_int_equal(out.n, 1);
	assert_ptr_equal(out.all[0].kind, two[1].name); /* the declaration's own string */
	assert_true(out.all[0].shown != &shown && bson_equal(out.all[0].shown, &shown));
	bson_destroy(&shown);
	bson_destroy(out.all[0].shown);
	free(out.all);
}

/* A cursor names a kind, and an item's kind and id name one record: so
 * each kind is declared once, by one module, and fits a cursor. */
static void
test_every_declared_kind_is_one_modules_and_fits_a_cursor(void **state)
{
	const char *seen[64];
	size_t n = 0;

	(void)state;
	for (size_t m = 0; m < tr_nmodules; m++) {
		const struct tr_timeline *t = tr_modules[m]->timeline;
		for (size_t i = 0; t && i < t->nkinds; i++) {
			const char *name = t->kinds[i].name;
			assert_true(strlen(name) > 0 && strlen(name) < TR_TIMELINE_KIND_MAX);
			for (size_t j = 0; j < n; j++)
				if (strcmp(seen[j], name) == 0)
					fail_msg("timeline kind %s is declared twice", name);
			assert_true(n < 64);
			seen[n++] = name;
		}
	}
	assert_true(n >= 5); /* the CRM's three, the ERP's two */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_is_newest_first_then_kind_by_name_then_larger_id),
	    cmocka_unit_test(test_each_kinds_bound_lists_exactly_what_follows_the_cursor),
	    cmocka_unit_test(test_a_cursor_names_the_last_item_and_nothing_else_passes),
	    cmocka_unit_test(test_a_module_adds_only_the_kinds_it_declared),
	    cmocka_unit_test(test_every_declared_kind_is_one_modules_and_fits_a_cursor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
