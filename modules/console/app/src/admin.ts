// Administration: users, roles, API keys, webhooks and their delivery log.
import { api, can, page, mount, pagedList, loadRecord } from "./ctx";
import { h, alertBox, form, badge, time, link, dl, clear } from "./dom";

interface User { id: string; version: number; email: string; name: string; roles: string[]; active: boolean; created_at: string }
interface Role { name: string; permissions: string[]; builtin?: boolean; built_in?: boolean }
interface Key { id: string; name: string; permissions: string[]; created_at: string; last_used_at?: string | null; prefix?: string }
interface Hook { id: string; version: number; url: string; topics: string[]; description?: string | null; active: boolean; ordered?: boolean; failing_since?: string | null; created_at: string }
interface Delivery { id: string; event_id?: string; event?: string; topic?: string; status: string; response_code?: number | null; duration_ms?: number | null; attempt?: number; next_attempt_at?: string | null; created_at?: string; attempted_at?: string; error?: string | null }

async function roleNames(): Promise<string[]> {
  try {
    const r = await api.request<{ items: Role[] }>("GET", "/v1/roles");
    return r.items.map((x) => x.name);
  } catch {
    return ["owner", "admin", "manager", "sales", "warehouse", "accountant", "employee"];
  }
}

const splitList = (s: string | boolean) => String(s).split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);

export async function usersView(root: HTMLElement): Promise<void> {
  const list = pagedList<User>({
    label: "Users", table: true, testid: "users", empty: "No users.", head: ["Name", "Email", "Roles", "Active", ""],
    fetch: (cursor) => api.page<User>("/v1/users", { limit: 50, cursor }),
    row: (u) => {
      const off = can("system.users.write") && u.active ? h("button", { type: "button", class: "link" }, "Deactivate " + u.name) : null;
      off?.addEventListener("click", async () => {
        if (!confirm("Deactivate " + u.name + "? Their sessions end.")) return;
        try {
          await api.request("DELETE", "/v1/users/" + u.id);
          list.upsert({ ...u, active: false });
        } catch (e) { alert.show(e); }
      });
      return h("tr", null, h("td", { "data-label": "Name" }, u.name), h("td", { "data-label": "Email" }, u.email),
        h("td", { "data-label": "Roles" }, u.roles.join(", ")), h("td", { "data-label": "Active" }, u.active ? "yes" : "no"),
        h("td", { "data-label": "" }, off));
    },
  });
  const alert = alertBox();
  let create: HTMLElement | null = null;
  if (can("system.users.write")) {
    const roles = await roleNames();
    const f = form([
      { name: "name", label: "Name", required: true },
      { name: "email", label: "Email", type: "email", required: true },
      { name: "roles", label: "Role", type: "select", options: roles, value: "sales" },
      { name: "password", label: "Initial password", type: "password", required: true, autocomplete: "new-password", hint: "At least 10 characters" },
    ], "Add user", async (v, fh) => {
      const u = await api.request<User>("POST", "/v1/users", { body: { name: v.name, email: v.email, roles: [v.roles], password: v.password } });
      list.upsert(u, true);
      fh.form.reset();
      fh.alert.ok("User " + u.name + " added.");
    }, { label: "Add user", cls: "grid" });
    create = h("details", { class: "panel" }, h("summary", null, "Add user"), f.form);
  }
  mount(root, page("Users", create, alert.el, list.el));
  await list.load();
}

export async function rolesView(root: HTMLElement): Promise<void> {
  const alert = alertBox();
  const body = h("div", { class: "roles", "data-testid": "roles" });
  const render = (roles: Role[]) => {
    clear(body);
    for (const r of roles) {
      body.append(h("section", { class: "panel", "aria-labelledby": "role-" + r.name },
        h("h2", { id: "role-" + r.name }, r.name, r.builtin || r.built_in ? h("span", { class: "badge" }, "built-in") : null),
        h("ul", { class: "perms" }, r.permissions.map((p) => h("li", null, h("code", null, p))))));
    }
  };
  const load = async () => {
    try {
      render((await api.request<{ items: Role[] }>("GET", "/v1/roles")).items);
    } catch (e) { alert.show(e); }
  };
  let create: HTMLElement | null = null;
  if (can("system.roles.write")) {
    const f = form([
      { name: "name", label: "Role name", required: true },
      { name: "permissions", label: "Permissions", type: "textarea", required: true, hint: "One per line or separated by commas, e.g. crm.leads.read:own" },
    ], "Create role", async (v, fh) => {
      await api.request("POST", "/v1/roles", { body: { name: v.name, permissions: splitList(v.permissions) } });
      fh.form.reset();
      fh.alert.ok("Role created.");
      await load();
    }, { label: "New role" });
    create = h("details", { class: "panel" }, h("summary", null, "New role"), f.form);
  }
  mount(root, page("Roles", create, alert.el, body));
  await load();
}

export async function keysView(root: HTMLElement): Promise<void> {
  const alert = alertBox();
  const list = pagedList<Key>({
    label: "API keys", table: true, testid: "api-keys", empty: "No API keys.", head: ["Name", "Permissions", "Created", "Last used", ""],
    fetch: (cursor) => api.page<Key>("/v1/api-keys", { limit: 50, cursor }),
    row: (k) => {
      const rv = can("system.api_keys.write") ? h("button", { type: "button", class: "link danger" }, "Revoke " + k.name) : null;
      rv?.addEventListener("click", async () => {
        if (!confirm("Revoke " + k.name + "? Integrations using it stop working.")) return;
        try {
          await api.request("DELETE", "/v1/api-keys/" + k.id);
          list.remove(k.id);
        } catch (e) { alert.show(e); }
      });
      return h("tr", null, h("td", { "data-label": "Name" }, k.name), h("td", { "data-label": "Permissions" }, (k.permissions || []).join(", ")),
        h("td", { "data-label": "Created" }, time(k.created_at)), h("td", { "data-label": "Last used" }, time(k.last_used_at)),
        h("td", { "data-label": "" }, rv));
    },
  });
  let create: HTMLElement | null = null;
  if (can("system.api_keys.write")) {
    const shown = h("div", { "aria-live": "polite" });
    const f = form([
      { name: "name", label: "Name", required: true },
      { name: "permissions", label: "Permissions", type: "textarea", required: true, value: "crm.leads.write", hint: "Separated by commas or lines" },
    ], "Create key", async (v, fh) => {
      const k = await api.request<Key & { key: string }>("POST", "/v1/api-keys", { body: { name: v.name, permissions: splitList(v.permissions) } });
      list.upsert(k, true);
      fh.form.reset();
      clear(shown);
      shown.append(h("div", { class: "alert alert-ok", role: "status" }, h("p", null, "The key, shown once - copy it now:"),
        h("code", { class: "secret", "data-testid": "new-key" }, k.key)));
    }, { label: "New API key" });
    create = h("details", { class: "panel" }, h("summary", null, "New API key"), f.form, shown);
  }
  mount(root, page("API keys", create, alert.el, list.el));
  await list.load();
}

export async function webhooksView(root: HTMLElement): Promise<void> {
  const list = pagedList<Hook>({
    label: "Webhooks", table: true, testid: "webhooks", empty: "No webhooks.", head: ["URL", "Topics", "State", "Created"],
    fetch: (cursor) => api.page<Hook>("/v1/webhooks", { limit: 50, cursor }),
    row: (w) => h("tr", null, h("td", { "data-label": "URL" }, link("#/admin/webhooks/" + w.id, w.url)),
      h("td", { "data-label": "Topics" }, w.topics.join(", ")),
      h("td", { "data-label": "State" }, badge(w.active ? (w.failing_since ? "failing" : "active") : "paused")),
      h("td", { "data-label": "Created" }, time(w.created_at))),
  });
  let create: HTMLElement | null = null;
  if (can("system.webhooks.write")) {
    const shown = h("div", { "aria-live": "polite" });
    const f = form([
      { name: "url", label: "URL", type: "url", required: true },
      { name: "topics", label: "Topics", required: true, value: "crm.leads", hint: "Separated by commas, e.g. crm.leads, erp.orders" },
      { name: "description", label: "Description" },
    ], "Add webhook", async (v, fh) => {
      const body: Record<string, unknown> = { url: v.url, topics: splitList(v.topics) };
      if (v.description) body.description = v.description;
      const w = await api.request<Hook & { secret?: string }>("POST", "/v1/webhooks", { body });
      list.upsert(w, true);
      fh.form.reset();
      clear(shown);
      if (w.secret) shown.append(h("div", { class: "alert alert-ok", role: "status" }, h("p", null, "Signing secret, shown once:"), h("code", { class: "secret" }, w.secret)));
    }, { label: "New webhook" });
    create = h("details", { class: "panel" }, h("summary", null, "Add webhook"), f.form, shown);
  }
  mount(root, page("Webhooks", create, list.el));
  await list.load();
}

export async function webhookView(root: HTMLElement, id: string): Promise<void> {
  const loaded = await loadRecord<Hook>(root, "Webhook", "/v1/webhooks/" + id);
  if (!loaded) return;
  const { alert } = loaded;
  let w = loaded.record;
  const writable = can("system.webhooks.write");
  const log = pagedList<Delivery>({
    label: "Delivery log", table: true, testid: "deliveries", empty: "Nothing delivered yet.",
    head: ["When", "Event", "Status", "Response", "Duration", "Next attempt", ""],
    fetch: (cursor) => api.page<Delivery>("/v1/webhooks/" + id + "/deliveries", { limit: 50, cursor }),
    row: (d) => {
      const rp = writable ? h("button", { type: "button", class: "link" }, "Replay") : null;
      rp?.addEventListener("click", async () => {
        try {
          await api.request("POST", "/v1/webhooks/" + id + "/deliveries/" + d.id + "/replay");
          alert.ok("Replay queued.");
        } catch (e) { alert.show(e); }
      });
      return h("tr", { "data-testid": "delivery" }, h("td", { "data-label": "When" }, time(d.attempted_at || d.created_at)),
        h("td", { "data-label": "Event" }, d.event || d.topic || d.event_id || "", d.attempt ? " (attempt " + d.attempt + ")" : ""), h("td", { "data-label": "Status" }, badge(d.status)),
        h("td", { "data-label": "Response" }, d.response_code ? String(d.response_code) : (d.error || "")),
        h("td", { "data-label": "Duration", class: "num" }, typeof d.duration_ms === "number" ? d.duration_ms + " ms" : ""),
        h("td", { "data-label": "Next attempt" }, time(d.next_attempt_at)), h("td", { "data-label": "" }, rp));
    },
  });
  const info = h("div");
  const render = () => {
    clear(info);
    info.append(dl([["URL", w.url], ["Topics", w.topics.join(", ")], ["State", badge(w.active ? "active" : "paused")],
      ["Failing since", time(w.failing_since)], ["Description", w.description || ""]]));
    if (writable) {
      const tg = h("button", { type: "button" }, w.active ? "Pause" : "Resume");
      tg.addEventListener("click", async () => {
        try {
          w = await api.request<Hook>("PATCH", "/v1/webhooks/" + id, { body: { active: !w.active }, ifMatch: w.version });
          render();
        } catch (e) { alert.show(e); }
      });
      const rot = h("button", { type: "button" }, "Rotate secret");
      rot.addEventListener("click", async () => {
        try {
          const r = await api.request<{ secret: string }>("POST", "/v1/webhooks/" + id + "/rotate-secret");
          alert.ok("New secret (shown once): " + r.secret);
        } catch (e) { alert.show(e); }
      });
      info.append(h("div", { class: "actions" }, tg, rot));
    }
  };
  render();
  mount(root, page("Webhook", h("p", null, link("#/admin/webhooks", "Back to webhooks")), alert.el, info,
    h("section", { "aria-labelledby": "dl-h" }, h("h2", { id: "dl-h" }, "Delivery log"), log.el)));
  await log.load();
}
