// unit-under-test: tools/demo/demo.c tools/demo/demo_world.c tools/demo/demo_plan.c
// tools/demo/demo_activity.c tools/demo/demo_erp.c tools/demo/demo_erp_run.c
/* The demo seed's ERP story as planned (tools/demo/demo_erp.c), without a
 * database: the same seed tells the same story whenever it is told, every
 * step is one the ERP accepts in that order (stock reserved only where it
 * is available, nothing shipped, received or paid twice, each order's
 * moves allowed by its status), and the orders are the CRM's clients', in
 * every status. The seed runs the steps through the ERP itself
 * (tests/integration/test_crm_demo.py); this finds a plan the ERP would
 * refuse before any database is involved. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../tools/demo/demo.c"
#include "../../tools/demo/demo_activity.c"
#include "../../tools/demo/demo_bpm.c"
#include "../../tools/demo/demo_erp.c"
#include "../../tools/demo/demo_erp_run.c"
#include "../../tools/demo/demo_people.c"
#include "../../tools/demo/demo_plan.c"
#include "../../tools/demo/demo_world.c"

#define NOW 1780000000000LL /* 2026-05-28T20:26:40Z */

struct planned {
	struct demo d;
	bson_t tenant;
};

static struct planned *
plan_at(int64_t now)
{
	struct planned *p = bson_malloc0(sizeof(*p));

	bson_init(&p->tenant);
	plan_story(&p->d, "unit-demo", now, "$argon2id$not-a-hash", &p->tenant);
	return p;
}

static void
unplan(struct planned *p)
{
	bson_destroy(&p->tenant);
	demo_free(&p->d);
	bson_free(p);
}

/* ---- the same story ---- */

static void
test_the_same_seed_plans_the_same_story_whenever_it_is_told(void **state)
{
	struct planned *a = plan_at(NOW), *b = plan_at(NOW), *later = plan_at(NOW + DAY_MS + 7);
	const struct erp_plan *x = &a->d.erp, *y = &b->d.erp, *z = &later->d.erp;

	(void)state;
	assert_int_equal(x->norders, DEMO_ORDERS);
	assert_true(x->nsteps > 5 * DEMO_ORDERS / 2);
	assert_int_equal(x->norders, y->norders);
	assert_int_equal(x->npurchases, y->npurchases);
	assert_int_equal(x->nsteps, y->nsteps);
	assert_memory_equal(x->orders, y->orders, x->norders * sizeof(*x->orders));
	assert_memory_equal(x->purchases, y->purchases, x->npurchases * sizeof(*x->purchases));
	assert_memory_equal(x->steps, y->steps, x->nsteps * sizeof(*x->steps));
	/* told a day later: the same story, a day later */
	assert_int_equal(x->nsteps, z->nsteps);
	assert_int_equal(x->npurchases, z->npurchases);
	assert_memory_equal(x->purchases, z->purchases, x->npurchases * sizeof(*x->purchases));
	for (size_t i = 0; i < x->nsteps; i++) {
		struct erp_step s = z->steps[i];
		assert_int_equal(s.at - x->steps[i].at, DAY_MS + 7);
		s.at = x->steps[i].at;
		assert_memory_equal(&s, &x->steps[i], sizeof(s));
	}
	unplan(a);
	unplan(b);
	unplan(later);
}

/* ---- every step one the ERP accepts ---- */

enum status { DRAFT, CONFIRMED, SHIPPED, INVOICED, PAID, COMPLETED, CANCELLED, NSTATUS };

struct order_state {
	enum status status;
	int64_t shipped[DEMO_DOC_LINES];
	int payments;
};

static bool
fully_shipped(const struct sales_plan *o, const struct order_state *s)
{
	for (int l = 0; l < o->nlines; l++)
		if (s->shipped[l] != o->lines[l].quantity)
			return false;
	return true;
}

static bool
any_shipped(const struct sales_plan *o, const struct order_state *s)
{
	for (int l = 0; l < o->nlines; l++)
		if (s->shipped[l])
			return true;
	return false;
}

/* Replays the plan as the ERP will see it (orders.c, billing.c,
 * shipping.c, purchasing.c, stock.c) and counts the orders' last status. */
static void
replay(const struct demo *d, int counts[NSTATUS])
{
	const struct erp_plan *e = &d->erp;
	int64_t on_hand[DEMO_NPRODUCTS][DEMO_NWAREHOUSES] = {{0}},
		reserved[DEMO_NPRODUCTS][DEMO_NWAREHOUSES] = {{0}};
	struct order_state *os = bson_malloc0(e->norders * sizeof(*os));
	int64_t(*received)[DEMO_DOC_LINES] = bson_malloc0(e->npurchases * sizeof(*received));
	bool *placed = bson_malloc0(e->npurchases * sizeof(*placed));
	int64_t before = 0;

	for (size_t i = 0; i < e->nsteps; i++) {
		const struct erp_step *s = &e->steps[i];
		if (s->at < before || s->at > e->limit)
			fail_msg("step %zu (kind %d) at %lld: after %lld, limit %lld", i, s->kind,
				 (long long)s->at, (long long)before, (long long)e->limit);
		before = s->at;
		if (s->kind == ES_PURCHASE || s->kind == ES_RECEIVE) {
			const struct purchase_plan *po = &e->purchases[s->doc];
			assert_true(po->nlines >= 1);
			if (s->kind == ES_PURCHASE) {
				assert_false(placed[s->doc]);
				placed[s->doc] = true;
				continue;
			}
			assert_true(placed[s->doc]);
			bool some = false;
			for (int l = 0; l < po->nlines; l++) {
				received[s->doc][l] += s->qty[l];
				assert_true(received[s->doc][l] <= po->lines[l].quantity);
				on_hand[po->lines[l].product][po->warehouse] += s->qty[l];
				some |= s->qty[l] > 0;
			}
			assert_true(some);
			continue;
		}
		if (s->kind == ES_WRITE_OFF || s->kind == ES_TRANSFER) {
			int p = s->doc, w = s->warehouse;
			assert_true(s->qty[0] > 0);
			assert_true(on_hand[p][w] - reserved[p][w] >= s->qty[0]);
			on_hand[p][w] -= s->qty[0];
			if (s->kind == ES_TRANSFER) {
				assert_int_not_equal(w, s->to_warehouse);
				on_hand[p][s->to_warehouse] += s->qty[0];
			}
			continue;
		}
		const struct sales_plan *o = &e->orders[s->doc];
		struct order_state *st = &os[s->doc];
		int w = o->warehouse;
		switch (s->kind) {
		case ES_ORDER:
			assert_int_equal(st->status, DRAFT);
			break;
		case ES_CONFIRM:
			assert_int_equal(st->status, DRAFT);
			for (int l = 0; l < o->nlines; l++) {
				int p = o->lines[l].product;
				assert_true(on_hand[p][w] - reserved[p][w] >= o->lines[l].quantity);
				reserved[p][w] += o->lines[l].quantity;
			}
			st->status = CONFIRMED;
			break;
		case ES_CANCEL:
			assert_true(st->status == DRAFT || st->status == CONFIRMED);
			assert_false(any_shipped(o, st));
			for (int l = 0; st->status == CONFIRMED && l < o->nlines; l++)
				reserved[o->lines[l].product][w] -= o->lines[l].quantity;
			st->status = CANCELLED;
			break;
		case ES_SHIP: {
			bool some = false;
			assert_true(st->status == CONFIRMED || st->status == INVOICED ||
				    st->status == PAID);
			for (int l = 0; l < o->nlines; l++) {
				int p = o->lines[l].product;
				st->shipped[l] += s->qty[l];
				assert_true(st->shipped[l] <= o->lines[l].quantity);
				on_hand[p][w] -= s->qty[l];
				reserved[p][w] -= s->qty[l];
				some |= s->qty[l] > 0;
			}
			assert_true(some);
			if (fully_shipped(o, st) && st->status != INVOICED)
				st->status = st->status == PAID ? COMPLETED : SHIPPED;
			break;
		}
		case ES_INVOICE:
			assert_true(st->status == CONFIRMED || st->status == SHIPPED);
			st->status = INVOICED;
			break;
		case ES_PAY:
			assert_int_equal(st->status, INVOICED);
			assert_int_equal(s->part, ++st->payments);
			if (s->last)
				st->status = fully_shipped(o, st) ? COMPLETED : PAID;
			break;
		default:
			fail_msg("a step of kind %d", s->kind);
		}
	}
	for (int p = 0; p < DEMO_NPRODUCTS; p++)
		for (int w = 0; w < DEMO_NWAREHOUSES; w++)
			assert_true(reserved[p][w] >= 0 && on_hand[p][w] >= reserved[p][w]);
	for (size_t i = 0; i < e->norders; i++)
		counts[os[i].status]++;
	bson_free(os);
	bson_free(received);
	bson_free(placed);
}

static void
test_every_step_is_one_the_erp_accepts_and_orders_end_in_every_status(void **state)
{
	struct planned *a = plan_at(NOW);
	int counts[NSTATUS] = {0};

	(void)state;
	replay(&a->d, counts);
	for (int s = 0; s < NSTATUS; s++)
		assert_true(counts[s] > 0);
	assert_true(counts[COMPLETED] >= DEMO_ORDERS / 2);
	unplan(a);
}

/* ---- the CRM's clients ---- */

static void
test_orders_are_the_clients_and_their_won_deals(void **state)
{
	struct planned *a = plan_at(NOW);
	const struct demo *d = &a->d;
	size_t from_deals = 0;

	(void)state;
	for (size_t i = 0; i < d->erp.norders; i++) {
		const struct sales_plan *o = &d->erp.orders[i];
		assert_true(o->client >= 0 && (size_t)o->client < d->nclients);
		assert_true(d->clients[o->client].first_won > 0);
		if (o->deal >= 0) {
			assert_int_equal(d->deals[o->deal].status, D_WON);
			assert_int_equal(d->deals[o->deal].client, o->client);
			assert_true(o->created > d->deals[o->deal].closed);
			from_deals++;
		}
		assert_true(o->nlines >= 1 && o->nlines <= 4);
		for (int l = 0; l < o->nlines; l++) {
			const struct demo_product *pr = &crm_demo_products[o->lines[l].product];
			assert_true(o->lines[l].quantity > 0 && o->lines[l].quantity <= pr->most);
			assert_int_equal(o->lines[l].quantity % pr->step, 0);
			assert_true(!o->retail || pr->retail);
			for (int m = 0; m < l; m++)
				assert_int_not_equal(o->lines[m].product, o->lines[l].product);
		}
	}
	assert_true(from_deals >= DEMO_ORDERS / 3 && from_deals <= DEMO_ORDERS - DEMO_ORDERS / 10);
	unplan(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_same_seed_plans_the_same_story_whenever_it_is_told),
	    cmocka_unit_test(test_every_step_is_one_the_erp_accepts_and_orders_end_in_every_status),
	    cmocka_unit_test(test_orders_are_the_clients_and_their_won_deals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
