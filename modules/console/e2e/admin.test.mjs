// Administration screens: users (one added), roles, API keys (one made, shown
// once), webhooks (one added) and its delivery log.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { tenant, browser, newPage, signIn, review, rid, APP } from "./support.mjs";

let b, t;
before(async () => {
  t = await tenant("admin");
  b = await browser();
});
after(async () => { await b?.close(); });

test("users, roles, API keys, webhooks and the delivery log", async () => {
  const { page, context } = await newPage(b);
  await signIn(page, t.slug, t.owner.email);

  await page.goto(APP + "#/admin/users");
  await page.getByTestId("users").getByText(t.owner.email).waitFor();
  await page.getByText("Add user", { exact: true }).first().click();
  const uf = page.getByRole("form", { name: "Add user" });
  const email = `new-${rid(3)}@${t.slug}.example`;
  await uf.getByLabel("Name").fill("Nina New");
  await uf.getByLabel("Email").fill(email);
  await uf.getByLabel("Role").selectOption("sales");
  await uf.getByLabel("Initial password").fill("short");
  await uf.getByRole("button", { name: "Add user" }).click();
  await uf.locator(".field-error:not([hidden])").filter({ hasText: /./ }).first().waitFor();
  assert.equal(await uf.getByLabel("Initial password").getAttribute("aria-invalid"), "true", "the password's error sits at the password");
  page.errors.list.splice(0, page.errors.list.length, ...page.errors.list.filter((e) => !/422/.test(e)));
  await uf.getByLabel("Initial password").fill("a much longer password");
  await uf.getByRole("button", { name: "Add user" }).click();
  await page.getByTestId("users").getByText(email).waitFor();
  await review(page, "admin-users");

  await page.goto(APP + "#/admin/roles");
  await page.getByRole("heading", { name: /^manager/ }).waitFor();
  await review(page, "admin-roles");

  await page.goto(APP + "#/admin/api-keys");
  await page.getByTestId("api-keys").waitFor();
  await page.getByText("New API key", { exact: true }).first().click();
  const kf = page.getByRole("form", { name: "New API key" });
  await kf.getByLabel("Name").fill("website form");
  await kf.getByRole("button", { name: "Create key" }).click();
  const key = await page.getByTestId("new-key").textContent();
  assert.match(key, /^trk_/);
  await page.getByTestId("api-keys").getByRole("cell", { name: "website form", exact: true }).waitFor();
  await review(page, "admin-api-keys");

  await page.goto(APP + "#/admin/webhooks");
  await page.getByTestId("webhooks").waitFor();
  await page.getByText("Add webhook", { exact: true }).first().click();
  const wf = page.getByRole("form", { name: "New webhook" });
  // the receiver is the server itself: deliveries fail, and the log shows them
  const url = new URL(APP).origin + "/nowhere/hook";
  await wf.getByLabel("URL").fill(url);
  await wf.getByLabel("Topics").fill("crm.leads");
  await wf.getByRole("button", { name: "Add webhook" }).click();
  const link = page.getByTestId("webhooks").getByRole("link", { name: url });
  const added = await Promise.race([link.waitFor().then(() => true), wf.getByRole("alert").filter({ hasText: /./ }).waitFor().then(() => false)]);
  if (!added) {
    // a server that refuses loopback receivers says so next to the URL; use a public one
    page.errors.list.splice(0, page.errors.list.length, ...page.errors.list.filter((e) => !/422/.test(e)));
    await wf.getByLabel("URL").fill("https://hooks.example.com/trellis");
    await wf.getByRole("button", { name: "Add webhook" }).click();
  }
  const any = page.getByTestId("webhooks").getByRole("link").first();
  await any.waitFor();
  await t.api("POST", "/v1/crm/leads", { name: "Hooked " + rid(2), email: `h-${rid(3)}@example.com` });
  await any.click();
  await page.getByRole("heading", { name: "Delivery log" }).waitFor();
  await page.getByTestId("deliveries").waitFor();
  await review(page, "admin-webhook");
  page.errors.check();
  await context.close();
});
