// The BPM inbox: a step assigned to the user appears live, opens with its
// instructions and form, shows field errors for bad input, and completes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { tenant, browser, newPage, signIn, live, review, until, rid, APP } from "./support.mjs";

let b, t, clerk;
const KEY = "approve-" + rid(3);
before(async () => {
  t = await tenant("bpm");
  clerk = await t.user("employee", "Erin Employee");
  await t.api("POST", "/v1/bpm/definitions", {
    key: KEY, name: "Approve a purchase",
    nodes: [
      { id: "approve", type: "user_task", name: "Approve the purchase", instructions: "Check the quote.\nApprove it if the price is right.",
        assignee: { user_id: clerk.id },
        form: [{ key: "approved", type: "bool", required: true }, { key: "quantity", type: "int", required: true },
          { key: "note", type: "string" }] },
      { id: "done", type: "end" },
    ],
    flows: [{ from: "start", to: "approve" }, { from: "approve", to: "done" }],
  });
  b = await browser();
});
after(async () => { await b?.close(); });

test("a step assigned to the user appears in the inbox live and completes with its form", async () => {
  const { page, context } = await newPage(b);
  await signIn(page, t.slug, clerk.email);
  await page.goto(APP + "#/inbox");
  await page.getByRole("heading", { name: "Assigned to me" }).waitFor();
  await live(page);
  await review(page, "inbox-empty");

  const inst = await t.api("POST", "/v1/bpm/instances", { definition_key: KEY, variables: { ref: "PO-1" } });
  const item = page.getByTestId("inbox").getByTestId("task").filter({ hasText: "Approve the purchase" });
  await item.waitFor({ timeout: 15000 });
  await item.getByRole("link").click();
  const detail = page.getByTestId("task-detail");
  await detail.getByText("Approve it if the price is right.").waitFor();

  // bad input: the server's field errors appear next to their fields
  await detail.getByLabel("quantity").fill("lots");
  await detail.getByRole("button", { name: "Complete" }).click();
  const qErr = detail.locator(".field").filter({ has: page.getByLabel("quantity") }).locator(".field-error");
  await qErr.filter({ hasText: /whole number/ }).waitFor();
  assert.equal(await detail.getByLabel("quantity").getAttribute("aria-invalid"), "true");
  await detail.getByRole("alert").filter({ hasText: /./ }).waitFor();
  page.errors.list.splice(0, page.errors.list.length, ...page.errors.list.filter((e) => !/422/.test(e)));
  await review(page, "inbox-task-errors");

  await detail.getByLabel("quantity").fill("12");
  await detail.getByLabel("approved").check();
  await detail.getByLabel("note").fill("fine");
  await detail.getByRole("button", { name: "Complete" }).click();
  await page.getByText("Done: Approve the purchase").waitFor();
  await until(async () => (await t.api("GET", "/v1/bpm/instances/" + inst.id)).status === "completed", { message: "the instance completed" });
  const vars = (await t.api("GET", "/v1/bpm/instances/" + inst.id)).variables;
  assert.equal(vars.quantity, 12);
  assert.equal(vars.approved, true);
  assert.equal(await page.getByTestId("inbox").getByTestId("task").filter({ hasText: "Approve the purchase" }).count(), 0,
    "the completed step left the inbox");
  page.errors.check();
  await context.close();
});
