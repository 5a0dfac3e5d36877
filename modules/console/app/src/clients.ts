// The client card: who they are, their contacts, and the timeline every
// module writes to (interactions, deals, claims, orders, invoices), newest first.
import { api, page, mount, pagedList, loadRecord } from "./ctx";
import { h, dl, time, badge, money, link } from "./dom";

interface Client { id: string; name: string; kind: string; owner_id: string; created_at: string }
interface Contact { id: string; name?: string; email?: string; phone?: string }
type Item = { id: string; type: string; at: string } & Record<string, any>;

function entry(it: Item): HTMLElement {
  const o = it[it.type] || {};
  let what: (Node | string)[] = [];
  switch (it.type) {
    case "interaction": what = [o.kind ? o.kind.replace("_", " ") : "interaction", ": ", o.summary || ""]; break;
    case "deal": what = ["Deal ", o.title || "", " ", badge(o.status), " ", money(o.amount)]; break;
    case "claim": what = ["Claim ", o.subject || "", " ", badge(o.status)]; break;
    case "order": what = [link("#/orders/" + o.id, "Order"), " ", badge(o.status), " ", money(o.total)]; break;
    case "invoice": what = ["Invoice ", o.number || "", " ", badge(o.status), " ", money(o.total)]; break;
    default: what = [it.type];
  }
  return h("li", { class: "event", "data-testid": "timeline-item" }, time(it.at), h("span", { class: "kind" }, it.type), h("span", null, what));
}

export async function clientView(root: HTMLElement, id: string): Promise<void> {
  const loaded = await loadRecord<Client>(root, "Client", "/v1/crm/clients/" + id);
  if (!loaded) return;
  const { alert } = loaded;
  let c = loaded.record;
  const contacts = h("ul", { class: "plain" });
  api.page<Contact>("/v1/crm/clients/" + id + "/contacts", { limit: 20 })
    .then((p) => { for (const k of p.items) contacts.append(h("li", null, [k.name, k.email, k.phone].filter(Boolean).join(" - "))); })
    .catch(() => undefined);
  // timeline items have no id of their own: make one from type and record
  let n = 0;
  const timeline = pagedList<Item>({
    label: "Timeline", testid: "timeline", empty: "Nothing has happened with this client yet.",
    fetch: async (cursor) => {
      const p = await api.page<Item>("/v1/crm/clients/" + id + "/timeline", { limit: 50, cursor });
      return { items: p.items.map((i) => ({ ...i, id: i.type + ":" + (i[i.type]?.id || String(++n)) })), next_cursor: p.next_cursor };
    },
    row: entry,
  });
  mount(root, page(c.name, h("p", null, link("#/leads", "Back to leads")), alert.el,
    dl([["Kind", c.kind], ["Since", time(c.created_at)]]),
    h("section", { class: "panel", "aria-labelledby": "ct-h" }, h("h2", { id: "ct-h" }, "Contacts"), contacts),
    h("section", { class: "panel", "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Timeline"), timeline.el)));
  await timeline.load();
}
