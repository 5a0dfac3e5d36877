// CRM leads: the list (filters, live arrivals, cursor paging, a quick create)
// and the lead card (status, convert to client and deal).
import { api, can, onLive, page, mount, pagedList, session, userName, loadRecord } from "./ctx";
import { h, form, time, badge, dl, link, clear } from "./dom";

export interface Lead {
  id: string; version: number; name: string; email: string | null; phone: string | null; company: string | null;
  source: { channel?: string; campaign_id?: string } | null; owner_id: string; status: string; lost_reason: string | null;
  duplicate_of: string | null; client_id?: string | null; deal_id?: string | null; created_at: string;
}

const STATUSES = ["new", "contacted", "qualified", "converted", "lost"];
const CHANNELS = ["web", "phone", "email", "referral", "ads", "event", "partner", "other"];

function leadRow(l: Lead): HTMLElement {
  return h("tr", { "data-testid": "lead-row" },
    h("td", { "data-label": "Name" }, link("#/leads/" + l.id, l.name)),
    h("td", { "data-label": "Company" }, l.company || ""),
    h("td", { "data-label": "Contact" }, l.email || l.phone || ""),
    h("td", { "data-label": "Source" }, l.source?.channel || ""),
    h("td", { "data-label": "Status" }, badge(l.status), l.duplicate_of ? h("span", { class: "badge badge-dup" }, "duplicate") : null),
    h("td", { "data-label": "Created" }, time(l.created_at)));
}

export function leadsView(root: HTMLElement): void {
  const params = new URLSearchParams(sessionStorage.getItem("trellis.console.leads") || "");
  const filter = { status: params.get("status") || "", email: params.get("email") || "", mine: params.get("mine") === "1" };

  const list = pagedList<Lead>({
    label: "Leads", table: true, testid: "leads", empty: "No leads match these filters.",
    head: ["Name", "Company", "Contact", "Source", "Status", "Created"],
    fetch: (cursor) => api.page<Lead>("/v1/crm/leads", {
      limit: 50, cursor, sort: "-created_at", status: filter.status || undefined, email: filter.email || undefined,
      owner_id: filter.mine ? session.me?.user.id : undefined,
    }),
    row: leadRow,
  });

  const matches = (l: Lead) => (!filter.status || l.status === filter.status) && (!filter.email || l.email === filter.email)
    && (!filter.mine || l.owner_id === session.me?.user.id);

  // the filters: a search form (GET-like, applied in place)
  const status = h("select", { id: "flt-status", name: "status" },
    h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s, selected: filter.status === s }, s)));
  const email = h("input", { id: "flt-email", name: "email", type: "search", value: filter.email, autocomplete: "off" });
  const mine = h("input", { id: "flt-mine", name: "mine", type: "checkbox", checked: filter.mine });
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter leads" },
    h("div", { class: "field" }, h("label", { for: "flt-status" }, "Status"), status),
    h("div", { class: "field" }, h("label", { for: "flt-email" }, "Email"), email),
    h("div", { class: "field field-check" }, mine, h("label", { for: "flt-mine" }, "Only mine")),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply")));
  const reload = () => {
    const q = new URLSearchParams();
    if (filter.status) q.set("status", filter.status);
    if (filter.email) q.set("email", filter.email);
    if (filter.mine) q.set("mine", "1");
    sessionStorage.setItem("trellis.console.leads", q.toString());
    leadsView(root);
  };
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    filter.status = status.value;
    filter.email = email.value.trim();
    filter.mine = mine.checked;
    reload();
  });
  status.addEventListener("change", () => { filter.status = status.value; reload(); });

  // a new lead
  let create: HTMLElement | null = null;
  if (can("crm.leads.write")) {
    const f = form([
      { name: "name", label: "Name", required: true },
      { name: "email", label: "Email", type: "email" },
      { name: "phone", label: "Phone", type: "tel" },
      { name: "company", label: "Company" },
      { name: "channel", label: "Source", type: "select", options: CHANNELS, value: "web" },
    ], "Create lead", async (v, fh) => {
      const body: Record<string, unknown> = { name: v.name, source: { channel: v.channel } };
      for (const k of ["email", "phone", "company"]) if (v[k]) body[k] = v[k];
      const l = await api.request<Lead>("POST", "/v1/crm/leads", { body, idempotencyKey: true });
      if (matches(l)) list.upsert(l, true);
      fh.form.reset();
      fh.alert.ok("Lead " + l.name + " created.");
    }, { label: "New lead", cls: "grid" });
    create = h("details", { class: "panel" }, h("summary", null, "New lead"), f.form);
  }

  const live = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  onLive((e) => {
    if (e.topic !== "crm.leads" || !e.data) return;
    const l = e.data as Lead;
    if (list.rows.has(l.id)) { list.upsert(l); return; }
    if (e.event === "crm.lead.created" && matches(l)) {
      const r = list.upsert(l, true);
      r?.classList.add("fresh");
      live.textContent = "New lead: " + l.name;
    }
  }, () => leadsView(root));

  mount(root, page("Leads", create, filters, live, list.el));
  void list.load();
}

export async function leadView(root: HTMLElement, id: string): Promise<void> {
  const loaded = await loadRecord<Lead>(root, "Lead", "/v1/crm/leads/" + id);
  if (!loaded) return;
  const { alert } = loaded;
  let lead = loaded.record;
  const body = h("div", { class: "card-body" });
  const owner = h("span");
  const render = () => {
    clear(body);
    body.append(dl([
      ["Status", badge(lead.status, "lead-status")],
      ["Company", lead.company || ""], ["Email", lead.email || ""], ["Phone", lead.phone || ""],
      ["Source", lead.source?.channel || ""], ["Owner", owner], ["Created", time(lead.created_at)],
      ["Duplicate of", lead.duplicate_of ? link("#/leads/" + lead.duplicate_of, "another lead") : "no"],
    ]));
    if (lead.client_id) body.append(h("p", null, link("#/clients/" + lead.client_id, "Open the client", { "data-testid": "client-link" })));
    if (lead.deal_id) body.append(h("p", null, link("#/board", "Open the pipeline", { "data-testid": "board-link" })));
  };
  void userName(lead.owner_id).then((n) => { owner.textContent = n; });
  render();

  const parts: HTMLElement[] = [body];
  if (can("crm.leads.write") && lead.status !== "converted") {
    const st = form([
      { name: "status", label: "Status", type: "select", options: STATUSES.filter((s) => s !== "converted"), value: lead.status },
      { name: "lost_reason", label: "Reason (when lost)" },
    ], "Save status", async (v, fh) => {
      const b: Record<string, unknown> = { status: v.status };
      if (v.status === "lost") b.lost_reason = v.lost_reason || null;
      lead = await api.request<Lead>("PATCH", "/v1/crm/leads/" + id, { body: b, ifMatch: lead.version });
      render();
      fh.alert.ok("Saved.");
    }, { label: "Lead status" });
    const conv = form([
      { name: "create_deal", label: "Also open a deal", type: "checkbox", value: true },
      { name: "deal_title", label: "Deal title", value: lead.company ? lead.company + " - " + lead.name : lead.name },
      { name: "amount", label: "Deal amount (EUR)", inputmode: "decimal", hint: "Optional, e.g. 1250.00" },
    ], "Convert", async (v) => {
      const b: Record<string, unknown> = { create_deal: v.create_deal === true };
      if (v.create_deal) b.deal_title = v.deal_title;
      if (v.create_deal && v.amount) {
        const n = Number(String(v.amount).replace(",", "."));
        b.amount = { amount: Number.isFinite(n) ? Math.round(n * 100) : v.amount, currency: "EUR" };
      }
      const r = await api.request<{ client: { id: string }; deal: { id: string } | null }>("POST", "/v1/crm/leads/" + id + "/convert", { body: b });
      lead = { ...lead, status: "converted", client_id: r.client?.id, deal_id: r.deal?.id || null };
      convSec.remove();
      stSec.remove();
      render();
    }, { label: "Convert lead" });
    const convSec = h("section", { class: "panel", "aria-labelledby": "conv-h" }, h("h2", { id: "conv-h" }, "Convert to a client"), conv.form);
    const stSec = h("section", { class: "panel", "aria-labelledby": "st-h" }, h("h2", { id: "st-h" }, "Change status"), st.form);
    parts.push(convSec, stSec);
  }
  onLive((e) => {
    if (e.topic === "crm.leads" && e.entity_id === id && e.data && e.data.version > lead.version) { lead = e.data; render(); }
  });
  mount(root, page(lead.name, h("p", null, link("#/leads", "Back to leads")), alert.el, parts));
}
