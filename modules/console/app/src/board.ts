// The pipeline board: open deals in columns by stage; a card moves by drag
// and drop, or by its "Move to" menu (keyboard and touch).
import { api, can, onLive, page, mount } from "./ctx";
import { h, alertBox, money, clear } from "./dom";

interface Stage { key: string; name: string; probability?: number }
interface Pipeline { id: string; name: string; stages: Stage[] }
interface Deal { id: string; version: number; title: string; amount: { amount: number; currency: string } | null; pipeline_id: string; stage: string; status: string; client_id: string }

export async function boardView(root: HTMLElement): Promise<void> {
  const alert = alertBox();
  mount(root, page("Pipeline", alert.el, h("p", { "aria-busy": "true" }, "Loading...")));
  let pipes: Pipeline[];
  try {
    pipes = (await api.page<Pipeline>("/v1/crm/pipelines", { limit: 50 })).items;
  } catch (e) {
    alert.show(e);
    return;
  }
  if (!pipes.length) { alert.show(new Error("No pipeline yet.")); return; }
  const chosen = sessionStorage.getItem("trellis.console.pipeline");
  const pipe = pipes.find((p) => p.id === chosen) || pipes[0];
  const writable = can("crm.deals.write");
  const deals = new Map<string, Deal>();
  const cards = new Map<string, HTMLElement>();
  const cols = new Map<string, HTMLElement>();
  const counts = new Map<string, HTMLElement>();
  const status = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  let dragged: string | null = null;

  const board = h("div", { class: "board", "data-testid": "board" });
  for (const s of pipe.stages) {
    const ul = h("ul", { class: "drop", "data-stage": s.key, "aria-labelledby": "stage-" + s.key });
    const count = h("span", { class: "count" }, "0");
    counts.set(s.key, count);
    cols.set(s.key, ul);
    const col = h("section", { class: "column", "data-testid": "stage-" + s.key, "aria-labelledby": "stage-" + s.key },
      h("h2", { id: "stage-" + s.key }, s.name, " ", count), ul);
    ul.addEventListener("dragover", (e) => { if (dragged) { e.preventDefault(); ul.classList.add("over"); } });
    ul.addEventListener("dragleave", () => ul.classList.remove("over"));
    ul.addEventListener("drop", (e) => {
      e.preventDefault();
      ul.classList.remove("over");
      const id = dragged || e.dataTransfer?.getData("text/plain");
      dragged = null;
      if (id) void move(id, s.key);
    });
    board.append(col);
  }

  const recount = () => { for (const [k, ul] of cols) counts.get(k)!.textContent = String(ul.children.length); };

  const card = (d: Deal): HTMLElement => {
    const sel = h("select", { "aria-label": "Move " + d.title + " to stage", disabled: !writable },
      pipe.stages.map((s) => h("option", { value: s.key, selected: s.key === d.stage }, s.name)));
    sel.addEventListener("change", () => void move(d.id, sel.value));
    const li = h("li", { class: "deal", draggable: writable ? "true" : null, "data-testid": "deal", "data-id": d.id },
      h("strong", null, d.title), h("span", { class: "amount" }, money(d.amount)),
      d.client_id ? h("a", { href: "#/clients/" + d.client_id }, "Client") : null, sel);
    li.addEventListener("dragstart", (e) => {
      dragged = d.id;
      e.dataTransfer?.setData("text/plain", d.id);
      if (e.dataTransfer) e.dataTransfer.effectAllowed = "move";
      li.classList.add("dragging");
    });
    li.addEventListener("dragend", () => { li.classList.remove("dragging"); dragged = null; });
    return li;
  };

  const place = (d: Deal) => {
    const old = deals.get(d.id);
    if (old && old.version > d.version) return;
    cards.get(d.id)?.remove();
    if (d.status !== "open" || d.pipeline_id !== pipe.id || !cols.has(d.stage)) {
      deals.delete(d.id);
      cards.delete(d.id);
      recount();
      return;
    }
    deals.set(d.id, d);
    const c = card(d);
    cards.set(d.id, c);
    cols.get(d.stage)!.prepend(c);
    recount();
  };

  async function move(id: string, stage: string): Promise<void> {
    const d = deals.get(id);
    if (!d || d.stage === stage) return;
    alert.clear();
    place({ ...d, stage });
    try {
      const after = await api.request<Deal>("POST", "/v1/crm/deals/" + id + "/stage", { body: { stage } });
      place(after);
      status.textContent = d.title + " moved to " + (pipe.stages.find((s) => s.key === stage)?.name || stage);
    } catch (e) {
      deals.set(id, d);
      place(d);
      alert.show(e);
    }
  }

  // every open deal of the pipeline, page by page
  let cursor: string | null = null;
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more deals");
  const load = async () => {
    more.disabled = true;
    try {
      const p = await api.page<Deal>("/v1/crm/deals", { pipeline_id: pipe.id, status: "open", limit: 200, cursor, sort: "-created_at" });
      for (const d of p.items) if (!deals.has(d.id)) place(d);
      cursor = p.next_cursor;
      more.hidden = !cursor;
    } catch (e) {
      alert.show(e);
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener("click", () => void load());

  onLive((e) => {
    if (e.topic === "crm.deals" && e.data) place(e.data as Deal);
  }, () => { for (const ul of cols.values()) clear(ul); deals.clear(); cards.clear(); cursor = null; void load(); });

  let picker: HTMLElement | null = null;
  if (pipes.length > 1) {
    const sel = h("select", { id: "pipe-pick" }, pipes.map((p) => h("option", { value: p.id, selected: p.id === pipe.id }, p.name)));
    sel.addEventListener("change", () => { sessionStorage.setItem("trellis.console.pipeline", sel.value); void boardView(root); });
    picker = h("div", { class: "field" }, h("label", { for: "pipe-pick" }, "Pipeline"), sel);
  }
  mount(root, page("Pipeline: " + pipe.name, picker, alert.el, status, board, more));
  await load();
}
