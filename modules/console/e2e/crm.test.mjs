// Sign in, create a lead, convert it, move its deal across the board, and
// open the client's timeline - each screen screenshotted and checked by axe.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { tenant, browser, newPage, signIn, review, live, until, APP, rid } from "./support.mjs";

let b, t;
before(async () => {
  t = await tenant("crm");
  b = await browser();
});
after(async () => { await b?.close(); });

test("sign in, create a lead, convert it, drag its deal across the pipeline", async () => {
  const { page, context } = await newPage(b);
  await page.goto(APP);
  await page.getByRole("heading", { name: "Sign in to Trellis" }).waitFor();
  await review(page, "login");

  // a wrong password shows the problem's detail
  await page.getByLabel("Company (tenant)").fill(t.slug);
  await page.getByLabel("Email").fill(t.owner.email);
  await page.getByLabel("Password").fill("not the password");
  page.errors.list.length = 0;
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: /./ }).waitFor();
  // the browser logs the 401 response itself; that one is expected
  page.errors.list.splice(0, page.errors.list.length, ...page.errors.list.filter((e) => !/401/.test(e)));

  await signIn(page, t.slug, t.owner.email);
  await page.getByRole("heading", { name: "Leads", level: 1 }).waitFor();
  await live(page);

  // create a lead from the form
  const name = "Ada Lovelace " + rid(2);
  await page.getByText("New lead", { exact: true }).click();
  const nf = page.getByRole("form", { name: "New lead" });
  await nf.getByLabel("Name").fill(name);
  await nf.getByLabel("Email").fill(`ada-${rid(3)}@example.com`);
  await nf.getByLabel("Company").fill("Analytical Engines");
  await nf.getByRole("button", { name: "Create lead" }).click();
  const row = page.getByTestId("lead-row").filter({ hasText: name });
  await row.waitFor();
  assert.equal(await row.count(), 1, "the new lead is listed once (the live echo does not add it twice)");

  // a lead without a name shows the field error next to the field
  await nf.getByLabel("Email").fill("nobody@example.com");
  await nf.getByRole("button", { name: "Create lead" }).click();
  await nf.locator(".field-error:not([hidden])").filter({ hasText: /./ }).first().waitFor();
  assert.equal(await nf.getByLabel("Name").getAttribute("aria-invalid"), "true", "the name field is marked invalid");
  page.errors.list.splice(0, page.errors.list.length, ...page.errors.list.filter((e) => !/422/.test(e)));
  await review(page, "leads");

  // the lead card, converted with a deal
  await row.getByRole("link", { name }).click();
  await page.getByRole("heading", { name, level: 1 }).waitFor();
  await review(page, "lead");
  await page.getByLabel("Deal title").fill("Engine for " + name);
  await page.getByRole("button", { name: "Convert" }).click();
  await page.getByTestId("lead-status").filter({ hasText: "converted" }).waitFor();
  const clientHref = await page.getByTestId("client-link").getAttribute("href");

  // the pipeline: drag the deal from the first stage to the next
  await page.getByTestId("board-link").click();
  await page.getByTestId("board").waitFor();
  const pipes = await t.api("GET", "/v1/crm/pipelines");
  const stages = pipes.items[0].stages;
  const card = page.getByTestId("deal").filter({ hasText: "Engine for " + name });
  await page.getByTestId("stage-" + stages[0].key).getByTestId("deal").filter({ hasText: "Engine for " + name }).waitFor();
  await review(page, "board");
  await card.dragTo(page.getByTestId("stage-" + stages[1].key).locator("ul"));
  await page.getByTestId("stage-" + stages[1].key).getByTestId("deal").filter({ hasText: "Engine for " + name }).waitFor();
  const dealId = await page.getByTestId("deal").filter({ hasText: "Engine for " + name }).getAttribute("data-id");
  // the card moves at once; the server follows when its answer comes
  await until(async () => (await t.api("GET", "/v1/crm/deals/" + dealId)).stage === stages[1].key,
    { message: "the server has the deal in the stage it was dropped in" });

  // and on with the keyboard-friendly menu
  await page.getByLabel("Move Engine for " + name + " to stage").selectOption(stages[2].key);
  await page.getByTestId("stage-" + stages[2].key).getByTestId("deal").filter({ hasText: "Engine for " + name }).waitFor();
  await until(async () => (await t.api("GET", "/v1/crm/deals/" + dealId)).stage === stages[2].key, { message: "the deal in the third stage" });

  // the client card with its timeline
  await page.goto(APP + clientHref);
  await page.getByRole("heading", { name: "Timeline" }).waitFor();
  await page.getByTestId("timeline-item").first().waitFor();
  await review(page, "client");
  page.errors.check();
  await context.close();
});
