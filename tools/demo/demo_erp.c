/* `trellis-demo seed` (demo.h): the ERP's story, planned. The company
 * sells office and IT equipment from two warehouses and buys it from four
 * suppliers. Its clients - the CRM's - order after they win a deal with it
 * (most won deals become an order, priced near the deal's amount) and
 * again later; each order goes as far as its age allows: a draft, then
 * confirmed, shipped (now and then in two parts), invoiced, paid (now and
 * then in two instalments, now and then late or not yet), a few cancelled;
 * some are paid before they ship.
 *
 * The stock is planned by walking the story in time order with the
 * quantities the ERP will keep (on hand, reserved, on order): whenever a
 * product runs low at a warehouse, a purchase order tops up that
 * supplier's products there, received days later (now and then in two
 * parts); an order that does not fit is helped by a transfer from the
 * other warehouse or an express delivery, so every confirmation the plan
 * makes the ERP accept. Quantities only: every value, cost, total and
 * posting is the ERP's, when demo_erp_run.c makes the steps.
 *
 * Every draw comes from the plan's own PRNG, after the CRM's plan is
 * complete, so the same CRM story gets the same ERP story. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

/* ---- the world: what is sold, where it is kept, who it comes from ---- */

const struct demo_place crm_demo_warehouses[DEMO_NWAREHOUSES] = {
    {"BER", "Berlin central warehouse"},
    {"AMS", "Amsterdam distribution hub"},
};

const struct demo_place crm_demo_suppliers[DEMO_NSUPPLIERS] = {
    {"KES", "Kessler Electronics GmbH"},
    {"LUM", "Lumen Office Supplies B.V."},
    {"VIS", "Vistula Components Sp. z o.o."},
    {"NRS", "Nordhavn Retail Systems A/S"},
};

/* sku, name, uom, scale, cost, price, tax, supplier, weight, step, most,
 * pack, retail. Costs and prices per uom in cents. */
const struct demo_product crm_demo_products[DEMO_NPRODUCTS] = {
    {"LAP-14", "Laptop 14\" business", "pcs", 0, 68000, 99900, 2000, 0, 9, 1, 25, 5, true},
    {"LAP-16", "Laptop 16\" workstation", "pcs", 0, 112000, 164900, 2000, 0, 4, 1, 10, 2, false},
    {"MON-24", "Monitor 24\" IPS", "pcs", 0, 11900, 18900, 2000, 0, 9, 1, 40, 10, true},
    {"MON-27", "Monitor 27\" 4K", "pcs", 0, 24900, 37900, 2000, 0, 6, 1, 30, 5, true},
    {"DOCK-C", "USB-C docking station", "pcs", 0, 9800, 15900, 2000, 0, 7, 1, 40, 10, true},
    {"KB-SET", "Wireless keyboard and mouse set", "pcs", 0, 2900, 4990, 2000, 0, 8, 1, 60, 20,
     true},
    {"HS-BT", "Bluetooth headset", "pcs", 0, 4500, 7900, 2000, 0, 7, 1, 60, 20, true},
    {"CAM-HD", "HD webcam", "pcs", 0, 3800, 6490, 2000, 0, 5, 1, 40, 10, true},
    {"PRN-A4", "Laser printer A4", "pcs", 0, 18500, 27900, 2000, 1, 4, 1, 8, 2, true},
    {"TON-BK", "Toner cartridge, black", "pcs", 0, 4200, 6900, 2000, 1, 6, 1, 40, 10, true},
    {"PAP-A4", "Copy paper A4, box of 5 reams", "box", 0, 1650, 2790, 2000, 1, 7, 1, 80, 40, true},
    {"LBL-58", "Thermal label roll 58 mm", "pcs", 0, 350, 690, 2000, 1, 4, 10, 400, 200, false},
    {"PAP-TH", "Thermal paper, bulk", "kg", 3, 420, 790, 2000, 1, 3, 500, 60000, 25000, false},
    {"CBL-C6", "Network cable Cat6", "m", 1, 45, 120, 2000, 2, 4, 50, 6000, 5000, false},
    {"SW-24", "Network switch, 24 ports", "pcs", 0, 21000, 32900, 2000, 2, 3, 1, 6, 2, false},
    {"AP-W6", "Wi-Fi 6 access point", "pcs", 0, 9500, 15900, 2000, 2, 4, 1, 20, 5, false},
    {"UPS-15", "UPS 1500 VA", "pcs", 0, 17500, 26900, 2000, 2, 2, 1, 6, 2, false},
    {"SSD-1T", "SSD 1 TB", "pcs", 0, 6200, 9900, 2000, 2, 5, 1, 40, 10, true},
    {"SCN-BC", "Barcode scanner", "pcs", 0, 8900, 14500, 2000, 3, 3, 1, 20, 5, false},
    {"POS-T", "POS terminal", "pcs", 0, 38000, 56900, 2000, 3, 2, 1, 8, 2, false},
    {"PRN-RC", "Receipt printer", "pcs", 0, 14500, 22900, 2000, 3, 2, 1, 10, 2, false},
    {"DSK-SS", "Sit-stand desk", "pcs", 0, 29000, 44900, 2000, 1, 3, 1, 20, 5, true},
    {"CHR-ER", "Ergonomic office chair", "pcs", 0, 16500, 26900, 2000, 1, 4, 1, 30, 5, true},
    {"GDE-PR", "Workplace setup guide, printed", "pcs", 0, 600, 1500, 700, 1, 3, 1, 50, 50, true},
};

/* Which warehouse serves a client's country (crm_demo_countries): Berlin
 * the east and south, Amsterdam the west. */
static const int country_warehouse[DEMO_NCOUNTRIES] = {0, 0, 1, 1, 1, 1, 0, 0, 0, 0};

/* ---- shorthands for the plan's own draws ---- */

static int
below(struct erp_plan *e, int n)
{
	return crm_demo_rng_below(&e->rng, n);
}

static bool
chance(struct erp_plan *e, int percent)
{
	return crm_demo_rng_chance(&e->rng, percent);
}

static int64_t
between(struct erp_plan *e, int64_t lo, int64_t hi)
{
	return crm_demo_rng_between(&e->rng, lo, hi);
}

static int64_t
scale_of(int product)
{
	int64_t f = 1;

	for (int i = 0; i < crm_demo_products[product].scale; i++)
		f *= 10;
	return f;
}

static int64_t
round_up(int64_t q, int64_t unit)
{
	return unit > 1 ? (q + unit - 1) / unit * unit : q;
}

static struct erp_step *
new_step(struct erp_plan *e, int64_t at, enum erp_step_kind kind, int doc)
{
	if (e->nsteps == e->steps_cap) {
		e->steps_cap = e->steps_cap ? e->steps_cap * 2 : 2048;
		e->steps = bson_realloc(e->steps, e->steps_cap * sizeof(*e->steps));
	}
	struct erp_step *s = &e->steps[e->nsteps++];
	memset(s, 0, sizeof(*s));
	s->at = at;
	s->kind = kind;
	s->doc = doc;
	return s;
}

/* ---- sales orders: who orders what, and when ---- */

/* Lines worth about target (minor units, before discount and tax): one to
 * four products (a private person: one or two they sell to persons), the
 * target shared among them. */
static void
plan_lines(struct erp_plan *e, struct sales_plan *o, int64_t target, bool key_account)
{
	int k = o->retail ? 1 + below(e, 2) : 1 + below(e, 4);
	double share[DEMO_DOC_LINES], sum = 0;
	int weights[DEMO_NPRODUCTS];

	for (int p = 0; p < DEMO_NPRODUCTS; p++)
		weights[p] =
		    o->retail && !crm_demo_products[p].retail ? 0 : crm_demo_products[p].weight;
	for (int i = 0; i < k; i++) {
		int p = crm_demo_rng_weighted(&e->rng, weights, DEMO_NPRODUCTS);
		weights[p] = 0; /* once per order */
		share[i] = 1.0 + 3.0 * crm_demo_rng_unit(&e->rng);
		sum += share[i];
		o->lines[i].product = p;
	}
	o->nlines = k;
	for (int i = 0; i < k; i++) {
		const struct demo_product *pr = &crm_demo_products[o->lines[i].product];
		double budget = (double)target * share[i] / sum;
		int64_t q =
		    (int64_t)(budget * (double)scale_of(o->lines[i].product) / (double)pr->price);
		q = q / pr->step * pr->step;
		o->lines[i].quantity = q < pr->step ? pr->step : q > pr->most ? pr->most : q;
		o->lines[i].price = pr->price;
		o->lines[i].discount_bp = key_account			   ? 1000
					  : !o->retail && target > 1000000 ? 500
					  : chance(e, 10)		   ? 250
									   : 0;
	}
}

/* An order of client c at `at`: from won deal `deal` (-1: none) worth
 * target. */
static void
add_order(struct demo *d, int client, int deal, int64_t at, int64_t target)
{
	struct erp_plan *e = &d->erp;
	const struct client_plan *c = &d->clients[client];

	if (e->norders == e->orders_cap) {
		e->orders_cap = e->orders_cap ? e->orders_cap * 2 : 256;
		e->orders = bson_realloc(e->orders, e->orders_cap * sizeof(*e->orders));
	}
	struct sales_plan *o = &e->orders[e->norders++];
	memset(o, 0, sizeof(*o));
	o->client = client;
	o->deal = deal;
	o->warehouse = country_warehouse[c->country];
	o->created = at < e->limit - 20 * MINUTE_MS ? at : e->limit - 20 * MINUTE_MS;
	o->retail = !c->company;
	plan_lines(e, o, target, c->key_account);
}

/* A log-uniform amount in [lo, hi) euros, in cents. */
static int64_t
log_uniform(struct erp_plan *e, double lo, double hi)
{
	return (int64_t)(exp(log(lo) + crm_demo_rng_unit(&e->rng) * (log(hi) - log(lo)))) * 100;
}

static int
by_created(const void *a, const void *b)
{
	const struct sales_plan *x = a, *y = b;

	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return (x->client > y->client) - (x->client < y->client);
}

/* Most won deals become an order soon after they close, worth the deal's
 * amount (up to 30,000 euros of goods); clients who won a deal order again
 * during the year, key accounts most often. Of these, DEMO_ORDERS drawn
 * evenly are the year's orders (the seed's time goes mostly to them). */
static void
plan_orders(struct demo *d)
{
	static const int company_repeats[] = {35, 30, 20, 15};
	struct erp_plan *e = &d->erp;

	for (size_t i = 0; i < d->ndeals; i++) {
		const struct deal_plan *deal = &d->deals[i];
		if (deal->status != D_WON || deal->closed > e->limit - HOUR_MS || !chance(e, 65))
			continue; /* (won within the hour: no order yet) */
		int64_t target = deal->amount < 3000000 ? deal->amount : 3000000;
		add_order(d, deal->client, (int)i, deal->closed + between(e, HOUR_MS, 3 * DAY_MS),
			  target);
	}
	for (size_t c = 0; c < d->nclients; c++) {
		const struct client_plan *client = &d->clients[c];
		int64_t from = client->first_won + 7 * DAY_MS, to = e->limit - HOUR_MS;
		if (!client->first_won || from >= to)
			continue;
		int n = client->key_account ? 3 + below(e, 4)
			: client->company   ? crm_demo_rng_weighted(&e->rng, company_repeats, 4)
					    : chance(e, 25);
		for (int k = 0; k < n; k++) {
			int64_t target = !client->company      ? log_uniform(e, 60, 600)
					 : client->key_account ? log_uniform(e, 1000, 12000)
							       : log_uniform(e, 300, 6000);
			add_order(d, (int)c, -1, between(e, from, to), target);
		}
	}
	/* DEMO_ORDERS of them, each as likely as the next (the first k of a
	 * shuffle), in time order */
	for (size_t i = 0; i < e->norders && i < DEMO_ORDERS; i++) {
		size_t j = i + (size_t)below(e, (int)(e->norders - i));
		struct sales_plan t = e->orders[i];
		e->orders[i] = e->orders[j];
		e->orders[j] = t;
	}
	if (e->norders > DEMO_ORDERS)
		e->norders = DEMO_ORDERS;
	qsort(e->orders, e->norders, sizeof(*e->orders), by_created);
}

/* ---- what became of each order ---- */

/* The payment methods: companies mostly transfer, persons mostly pay by
 * card (indexes into demo_erp_run.c's methods: bank, card, cash). */
static int
payment_method(struct erp_plan *e, bool retail)
{
	static const int business[] = {80, 15, 5}, person[] = {25, 60, 15};
	return crm_demo_rng_weighted(&e->rng, retail ? person : business, 3);
}

/* Adds the step at `at` when it has happened by now; false when it has
 * not (the order stops there: what follows is later still). */
static struct erp_step *
happened(struct erp_plan *e, int64_t at, enum erp_step_kind kind, int order)
{
	return at <= e->limit ? new_step(e, at, kind, order) : NULL;
}

/* A shipment of the whole order (part 0), or of its first half (part 1:
 * half of every line of more than one step, the whole of the others) or
 * the rest (part 2). */
static void
ship_quantities(const struct sales_plan *o, int part, int64_t *qty)
{
	for (int i = 0; i < o->nlines; i++) {
		int64_t q = o->lines[i].quantity,
			step = crm_demo_products[o->lines[i].product].step;
		int64_t first = q > step ? q / step / 2 * step : q;
		qty[i] = part == 0 ? q : part == 1 ? first : q - first;
	}
}

static bool
splittable(const struct sales_plan *o)
{
	for (int i = 0; i < o->nlines; i++)
		if (o->lines[i].quantity > crm_demo_products[o->lines[i].product].step)
			return true;
	return false;
}

static struct erp_step *
plan_ship(struct erp_plan *e, int64_t at, int order, int part)
{
	struct erp_step *s = happened(e, at, ES_SHIP, order);

	if (s) {
		s->part = part;
		ship_quantities(&e->orders[order], part, s->qty);
	}
	return s;
}

static struct erp_step *
plan_pay(struct erp_plan *e, int64_t at, int order, int part, bool last)
{
	struct erp_step *s = happened(e, at, ES_PAY, order);

	if (s) {
		s->part = part;
		s->last = last;
		s->method = payment_method(e, e->orders[order].retail);
	}
	return s;
}

/* The steps of order i, as far as its age allows. Most are confirmed
 * within the day and ship within days, invoiced when shipped and paid
 * within weeks of the invoice that follows them (some in two
 * instalments, a few not yet); a fifth pay first and ship after; some
 * young ones are still drafts, a few are cancelled before anything left. */
static void
plan_life(struct erp_plan *e, int i)
{
	const struct sales_plan *o = &e->orders[i];
	struct erp_step *s;
	int64_t t = o->created;

	new_step(e, t, ES_ORDER, i);
	if (e->limit - t < 2 * DAY_MS && chance(e, 45))
		return; /* still a draft */
	if (chance(e, 2)) {
		happened(e, t + between(e, 2 * HOUR_MS, 2 * DAY_MS), ES_CANCEL, i);
		return;
	}
	if (!(s = happened(e, t + between(e, 5 * MINUTE_MS, 20 * HOUR_MS), ES_CONFIRM, i)))
		return;
	t = s->at;
	if (chance(e, 3)) {
		happened(e, t + between(e, HOUR_MS, 3 * DAY_MS), ES_CANCEL, i);
		return;
	}
	if (chance(e, 20)) { /* paid first */
		if (!(s = happened(e, t + between(e, 30 * MINUTE_MS, DAY_MS), ES_INVOICE, i)) ||
		    !(s = plan_pay(e, s->at + between(e, DAY_MS, 6 * DAY_MS), i, 1, true)))
			return;
		plan_ship(e, s->at + between(e, DAY_MS, 10 * DAY_MS), i, 0);
		return;
	}
	if (chance(e, 15) && splittable(o)) {
		if (!(s = plan_ship(e, t + between(e, 6 * HOUR_MS, 5 * DAY_MS), i, 1)) ||
		    !(s = plan_ship(e, s->at + between(e, 3 * DAY_MS, 12 * DAY_MS), i, 2)))
			return;
	} else if (!(s = plan_ship(e, t + between(e, 6 * HOUR_MS, 5 * DAY_MS), i, 0))) {
		return;
	}
	if (!(s = happened(e, s->at + between(e, 6 * HOUR_MS, 5 * DAY_MS), ES_INVOICE, i)))
		return;
	t = s->at;
	if (chance(e, 5))
		return; /* not paid yet, whatever its due date */
	if (chance(e, 15)) {
		if ((s = plan_pay(e, t + between(e, 7 * DAY_MS, 25 * DAY_MS), i, 1, false)))
			plan_pay(e, s->at + between(e, 10 * DAY_MS, 30 * DAY_MS), i, 2, true);
		return;
	}
	plan_pay(e, t + between(e, 5 * DAY_MS, 40 * DAY_MS), i, 1, true);
}

/* ---- the stock: purchases that keep it up ---- */

/* What the plan knows of a product at a warehouse: the quantities the ERP
 * will keep, what is ordered and not yet received, when to reorder and up
 * to what. */
struct slot {
	int64_t on_hand, reserved, on_order, reorder_at, up_to;
};

/* A receipt still to come. */
struct arrival {
	int64_t at;
	int purchase, part;
	bool done;
};

struct stock {
	struct slot slots[DEMO_NPRODUCTS][DEMO_NWAREHOUSES];
	struct arrival *arrivals;
	size_t narrivals, cap;
	bool *confirmed; /* per order: its reservation stands */
};

static int64_t
available(const struct slot *s)
{
	return s->on_hand - s->reserved;
}

/* The supplier's price at t: within 6% of the list cost over the year (a
 * wave of its own per product), give or take 1% on the day. */
static int64_t
unit_cost_at(struct demo *d, int p, int64_t t)
{
	double year = (double)(t - d->start) / (double)(DEMO_HISTORY_DAYS * DAY_MS);
	double f = 1.0 + 0.06 * sin(6.283185307 * year + 0.7 * p) +
		   0.02 * (crm_demo_rng_unit(&d->erp.rng) - 0.5);
	return (int64_t)llround((double)crm_demo_products[p].cost * f);
}

/* The demand of each product at each warehouse over the plan: reorder
 * when three weeks of it are left, up to three months' worth. */
static void
plan_levels(struct demo *d, struct stock *st)
{
	int64_t demand[DEMO_NPRODUCTS][DEMO_NWAREHOUSES] = {{0}};
	struct erp_plan *e = &d->erp;

	for (size_t i = 0; i < e->norders; i++)
		for (int l = 0; l < e->orders[i].nlines; l++)
			demand[e->orders[i].lines[l].product][e->orders[i].warehouse] +=
			    e->orders[i].lines[l].quantity;
	for (int p = 0; p < DEMO_NPRODUCTS; p++)
		for (int w = 0; w < DEMO_NWAREHOUSES; w++) {
			const struct demo_product *pr = &crm_demo_products[p];
			double daily = (double)demand[p][w] / DEMO_HISTORY_DAYS;
			struct slot *s = &st->slots[p][w];
			s->reorder_at = round_up((int64_t)ceil(daily * 21), pr->step) + pr->step;
			s->up_to = round_up((int64_t)ceil(daily * 90), pr->pack);
			if (s->up_to < s->reorder_at + pr->pack)
				s->up_to = round_up(s->reorder_at + pr->pack, pr->pack);
		}
}

static void
expect(struct stock *st, int64_t at, int purchase, int part)
{
	if (st->narrivals == st->cap) {
		st->cap = st->cap ? st->cap * 2 : 64;
		st->arrivals = bson_realloc(st->arrivals, st->cap * sizeof(*st->arrivals));
	}
	st->arrivals[st->narrivals++] = (struct arrival){at, purchase, part, false};
}

/* A purchase order of supplier at warehouse w at `at`, of each of its
 * products there worth topping up (below half their level; product
 * `must` whatever its level, with at least `need` more), received after
 * lead time: in two parts now and then, at once when express. Returns the
 * purchase's index. */
static int
purchase(struct demo *d, struct stock *st, int64_t at, int supplier, int w, int must, int64_t need,
	 bool express)
{
	struct erp_plan *e = &d->erp;

	if (e->npurchases == e->purchases_cap) {
		e->purchases_cap = e->purchases_cap ? e->purchases_cap * 2 : 128;
		e->purchases = bson_realloc(e->purchases, e->purchases_cap * sizeof(*e->purchases));
	}
	int k = (int)e->npurchases++;
	struct purchase_plan *po = &e->purchases[k];
	memset(po, 0, sizeof(*po));
	po->supplier = supplier;
	po->warehouse = w;
	for (int p = 0; p < DEMO_NPRODUCTS && po->nlines < DEMO_DOC_LINES; p++) {
		struct slot *s = &st->slots[p][w];
		int64_t level = available(s) + s->on_order;
		if (crm_demo_products[p].supplier != supplier ||
		    (p != must && level * 2 >= s->up_to))
			continue;
		int64_t q = s->up_to - level;
		if (p == must && q < need)
			q = need;
		q = round_up(q, crm_demo_products[p].pack);
		if (q <= 0)
			continue;
		po->lines[po->nlines++] =
		    (struct doc_line){.product = p, .quantity = q, .price = unit_cost_at(d, p, at)};
		s->on_order += q;
	}
	new_step(e, at, ES_PURCHASE, k);
	if (express) {
		expect(st, at, k, 0);
		return k;
	}
	int64_t arrives = at + between(e, 3 * DAY_MS, 10 * DAY_MS);
	bool splittable = false;
	for (int l = 0; l < po->nlines; l++)
		splittable |= po->lines[l].quantity > crm_demo_products[po->lines[l].product].pack;
	if (chance(e, 20) && splittable) {
		expect(st, arrives, k, 1);
		expect(st, arrives + between(e, 2 * DAY_MS, 7 * DAY_MS), k, 2);
	} else {
		expect(st, arrives, k, 0);
	}
	return k;
}

/* A receipt of the whole purchase order (part 0), of about 60% of each
 * line of more than a pack (whole packs, at least one) and the whole of
 * the others (part 1), or the rest (part 2). Lines are whole packs. */
static void
receipt_quantities(const struct purchase_plan *po, int part, int64_t *qty)
{
	for (int i = 0; i < po->nlines; i++) {
		int64_t q = po->lines[i].quantity,
			pack = crm_demo_products[po->lines[i].product].pack;
		int64_t first = q > pack ? q * 6 / 10 / pack * pack : q;
		if (first < pack)
			first = pack < q ? pack : q;
		qty[i] = part == 0 ? q : part == 1 ? first : q - first;
	}
}

/* The receipts due by `at` (all, when at is the limit), in time order. */
static void
receive_until(struct demo *d, struct stock *st, int64_t at)
{
	struct erp_plan *e = &d->erp;

	for (;;) {
		struct arrival *next = NULL;
		for (size_t i = 0; i < st->narrivals; i++)
			if (!st->arrivals[i].done && st->arrivals[i].at <= at &&
			    (!next || st->arrivals[i].at < next->at))
				next = &st->arrivals[i];
		if (!next)
			return;
		next->done = true;
		const struct purchase_plan *po = &e->purchases[next->purchase];
		struct erp_step *s = new_step(e, next->at, ES_RECEIVE, next->purchase);
		s->part = next->part;
		receipt_quantities(po, next->part, s->qty);
		for (int l = 0; l < po->nlines; l++) {
			struct slot *sl = &st->slots[po->lines[l].product][po->warehouse];
			sl->on_hand += s->qty[l];
			sl->on_order -= s->qty[l];
		}
	}
}

/* Before order i is confirmed at `at`: every line fits the warehouse's
 * available stock, by a transfer from the other warehouse when it has
 * plenty, or else an express delivery. */
static void
make_room(struct demo *d, struct stock *st, int64_t at, int i)
{
	struct erp_plan *e = &d->erp;
	const struct sales_plan *o = &e->orders[i];
	int w = o->warehouse, other = 1 - w;

	for (int l = 0; l < o->nlines; l++) {
		int p = o->lines[l].product;
		struct slot *s = &st->slots[p][w], *t = &st->slots[p][other];
		int64_t short_by = o->lines[l].quantity - available(s);
		if (short_by <= 0)
			continue;
		int64_t spare = available(t) - t->reorder_at;
		if (spare >= short_by) {
			int64_t q = round_up(short_by, crm_demo_products[p].step);
			struct erp_step *m = new_step(e, at, ES_TRANSFER, p);
			m->warehouse = other;
			m->to_warehouse = w;
			m->qty[0] = q;
			t->on_hand -= q;
			s->on_hand += q;
			continue;
		}
		purchase(d, st, at, crm_demo_products[p].supplier, w, p, short_by, true);
		receive_until(d, st, at);
	}
}

/* After a reservation: products of order i that ran low are reordered. */
static void
reorder(struct demo *d, struct stock *st, int64_t at, int i)
{
	const struct sales_plan *o = &d->erp.orders[i];

	for (int l = 0; l < o->nlines; l++) {
		int p = o->lines[l].product;
		const struct slot *s = &st->slots[p][o->warehouse];
		if (available(s) + s->on_order < s->reorder_at)
			purchase(d, st, at, crm_demo_products[p].supplier, o->warehouse, p, 0,
				 false);
	}
}

/* A write-off of damaged stock at `at`: a unit or two of a product that
 * has some (none when nothing is there). */
static void
write_off(struct demo *d, struct stock *st, int64_t at)
{
	struct erp_plan *e = &d->erp;
	int p = below(e, DEMO_NPRODUCTS), w = below(e, DEMO_NWAREHOUSES), reason = below(e, 4);
	struct slot *s = &st->slots[p][w];
	int64_t q = crm_demo_products[p].step * (1 + below(e, 2));

	if (available(s) < q)
		return;
	struct erp_step *m = new_step(e, at, ES_WRITE_OFF, p);
	m->warehouse = w;
	m->reason = reason;
	m->qty[0] = q;
	s->on_hand -= q;
}

static int
by_time(const void *a, const void *b)
{
	const struct erp_step *x = a, *y = b;

	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	if (x->doc != y->doc)
		return x->doc < y->doc ? -1 : 1;
	return (x->kind > y->kind) - (x->kind < y->kind);
}

/* Walks the orders' steps in time order, with the stock the ERP will
 * keep, and writes the story's steps: purchases and receipts, transfers
 * and write-offs among the orders' own. */
static void
plan_stock(struct demo *d, struct erp_step *life, size_t nlife)
{
	struct erp_plan *e = &d->erp;
	struct stock *st = bson_malloc0(sizeof(*st));
	int64_t next_write_off = d->start + between(e, 20 * DAY_MS, 70 * DAY_MS);

	st->confirmed = bson_malloc0((e->norders ? e->norders : 1) * sizeof(*st->confirmed));
	plan_levels(d, st);
	/* the opening stock: everything up to its level, before the first order */
	for (int w = 0; w < DEMO_NWAREHOUSES; w++)
		for (int k = 0; k < DEMO_NSUPPLIERS; k++)
			purchase(d, st, d->start + HOUR_MS * (1 + w * DEMO_NSUPPLIERS + k), k, w,
				 -1, 0, false);
	for (size_t j = 0; j < nlife; j++) {
		const struct erp_step *s = &life[j];
		const struct sales_plan *o = &e->orders[s->doc];
		while (next_write_off <= s->at) {
			receive_until(d, st, next_write_off);
			write_off(d, st, next_write_off);
			next_write_off += between(e, 40 * DAY_MS, 80 * DAY_MS);
		}
		receive_until(d, st, s->at);
		if (s->kind == ES_CONFIRM)
			make_room(d, st, s->at, s->doc);
		*new_step(e, s->at, s->kind, s->doc) = *s;
		for (int l = 0; l < o->nlines; l++) {
			struct slot *sl = &st->slots[o->lines[l].product][o->warehouse];
			int64_t q = o->lines[l].quantity;
			if (s->kind == ES_CONFIRM)
				sl->reserved += q;
			else if (s->kind == ES_CANCEL && st->confirmed[s->doc])
				sl->reserved -= q;
			else if (s->kind == ES_SHIP)
				sl->on_hand -= s->qty[l], sl->reserved -= s->qty[l];
		}
		if (s->kind == ES_CONFIRM) {
			st->confirmed[s->doc] = true;
			reorder(d, st, s->at, s->doc);
		}
	}
	receive_until(d, st, e->limit);
	bson_free(st->arrivals);
	bson_free(st->confirmed);
	bson_free(st);
}

void
crm_demo_plan_erp(struct demo *d)
{
	struct erp_plan *e = &d->erp;

	e->rng.state = DEMO_ERP_SEED;
	e->limit = d->now - 10 * MINUTE_MS;
	plan_orders(d);
	for (size_t i = 0; i < e->norders; i++)
		plan_life(e, (int)i);
	/* the orders' steps in time order, then the story with the stock */
	struct erp_step *life = e->steps;
	size_t nlife = e->nsteps;
	e->steps = NULL;
	e->nsteps = e->steps_cap = 0;
	qsort(life, nlife, sizeof(*life), by_time);
	plan_stock(d, life, nlife);
	bson_free(life);
}

void
crm_demo_erp_free(struct demo *d)
{
	bson_free(d->erp.orders);
	bson_free(d->erp.purchases);
	bson_free(d->erp.steps);
}
