// ERP: stock by warehouse, the orders list, an order confirmed and invoiced
// in the console, paid through the API - its open view turns "paid" live - and
// shipped from the console.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { tenant, browser, newPage, signIn, live, review, orderFixture, APP } from "./support.mjs";

let b, t, fx;
before(async () => {
  t = await tenant("erp");
  fx = await orderFixture(t, { quantity: 3, price: 12500 });
  b = await browser();
});
after(async () => { await b?.close(); });

test("stock by warehouse and the orders list", async () => {
  const { page, context } = await newPage(b);
  await signIn(page, t.slug, t.owner.email);
  await page.goto(APP + "#/stock");
  await page.getByLabel("Warehouse").selectOption(fx.wh.id);
  const row = page.getByTestId("stock-row").filter({ hasText: fx.product.sku });
  await row.waitFor();
  await row.filter({ hasText: "100 pcs" }).first().waitFor();
  await review(page, "stock");
  await page.goto(APP + "#/orders");
  await page.getByTestId("order-row").first().waitFor();
  await review(page, "orders");
  page.errors.check();
  await context.close();
});

test("an order paid through the API turns paid in its open view without a reload", async () => {
  const { page, context } = await newPage(b);
  await signIn(page, t.slug, t.owner.email);
  await page.goto(APP + "#/orders/" + fx.order.id);
  await live(page);
  const status = page.getByTestId("order-status");
  await status.filter({ hasText: "draft" }).waitFor();
  await page.getByRole("button", { name: "Confirm order" }).click();
  await status.filter({ hasText: "confirmed" }).waitFor();
  await page.getByRole("button", { name: "Create invoice" }).click();
  await status.filter({ hasText: "invoiced" }).waitFor();
  await page.getByRole("button", { name: "Record payment" }).waitFor();
  await review(page, "order");

  // no reload from here: mark the document, pay through the API
  await page.evaluate(() => { window.__noReload = true; });
  const inv = (await t.api("GET", "/v1/erp/invoices?order_id=" + fx.order.id)).items[0];
  await t.api("POST", `/v1/erp/orders/${fx.order.id}/payments`, { amount: inv.total, method: "bank", reference: "e2e" },
    { headers: { "idempotency-key": "pay-" + fx.order.id } });
  await status.filter({ hasText: /^paid$/ }).waitFor({ timeout: 15000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
  await review(page, "order-paid");

  await page.getByRole("button", { name: "Ship all" }).click();
  await status.filter({ hasText: /shipped|completed/ }).waitFor();
  page.errors.check();
  await context.close();
});
