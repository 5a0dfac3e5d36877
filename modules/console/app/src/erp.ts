// ERP: stock by warehouse, the orders list, and an order's view with its
// next step (confirm, invoice, pay, ship) and a status that follows live events.
import { api, can, onLive, page, mount, pagedList, loadRecord } from "./ctx";
import { h, alertBox, badge, money, time, link, dl, form, clear } from "./dom";

type Money = { amount: number; currency: string };
interface Warehouse { id: string; code: string; name: string }
interface Product { id: string; sku: string; name: string; uom: string; uom_scale: number }
interface StockItem { id: string; product_id: string; warehouse_id: string; on_hand: number; reserved: number; available: number; value: Money | null }
interface Line { product_id: string; quantity: number; unit_price: Money; discount_bp?: number; net?: Money; tax?: Money; total?: Money }
interface Order { id: string; version: number; number?: string; client_id: string | null; warehouse_id: string; currency: string; lines: Line[]; status: string; total: Money | null; created_at: string }
interface Invoice { id: string; number: string; total: Money; paid: Money | null; status: string; due_at: string | null }

const products = new Map<string, Promise<Product | null>>();
function product(id: string): Promise<Product | null> {
  let p = products.get(id);
  if (!p) {
    p = api.request<Product>("GET", "/v1/erp/products/" + id).catch(() => null);
    products.set(id, p);
  }
  return p;
}

function qty(n: number, p: Product | null): string {
  if (!p || !p.uom_scale) return String(n) + (p ? " " + p.uom : "");
  const s = Math.abs(n).toString().padStart(p.uom_scale + 1, "0");
  return (n < 0 ? "-" : "") + s.slice(0, -p.uom_scale) + "." + s.slice(-p.uom_scale) + " " + p.uom;
}

function productCell(id: string, cell: HTMLElement, after?: (p: Product | null) => void): void {
  cell.textContent = "...";
  void product(id).then((p) => { cell.textContent = p ? p.sku + " " + p.name : id; after?.(p); });
}

export async function stockView(root: HTMLElement): Promise<void> {
  const alert = alertBox();
  let whs: Warehouse[] = [];
  try {
    whs = (await api.page<Warehouse>("/v1/erp/warehouses", { limit: 200 })).items;
  } catch (e) {
    alert.show(e);
  }
  const saved = sessionStorage.getItem("trellis.console.warehouse") || "";
  const wh = whs.find((w) => w.id === saved)?.id || "";
  const names = new Map(whs.map((w) => [w.id, w.code + " " + w.name]));
  const sel = h("select", { id: "wh-pick" }, h("option", { value: "" }, "All warehouses"),
    whs.map((w) => h("option", { value: w.id, selected: w.id === wh }, w.code + " - " + w.name)));
  sel.addEventListener("change", () => { sessionStorage.setItem("trellis.console.warehouse", sel.value); void stockView(root); });
  const row = (s: StockItem) => {
    const name = h("td", { "data-label": "Product" });
    const cells = [h("td", { "data-label": "On hand", class: "num" }), h("td", { "data-label": "Reserved", class: "num" }), h("td", { "data-label": "Available", class: "num" })];
    productCell(s.product_id, name, (p) => {
      cells[0].textContent = qty(s.on_hand, p); cells[1].textContent = qty(s.reserved, p); cells[2].textContent = qty(s.available, p);
    });
    return h("tr", { "data-testid": "stock-row" }, name, h("td", { "data-label": "Warehouse" }, names.get(s.warehouse_id) || ""),
      cells, h("td", { "data-label": "Value", class: "num" }, money(s.value)));
  };
  const key = (s: StockItem) => ({ ...s, id: s.product_id + ":" + s.warehouse_id });
  const list = pagedList<StockItem>({
    label: "Stock", table: true, testid: "stock", empty: "No stock here yet.",
    head: ["Product", "Warehouse", "On hand", "Reserved", "Available", "Value"],
    fetch: async (cursor) => {
      // the stock list takes only its two filters; a cursor, should it ever send one, goes back
      const p = await api.page<StockItem>("/v1/erp/stock", { warehouse_id: wh || undefined, cursor: cursor || undefined });
      return { items: p.items.map(key), next_cursor: p.next_cursor };
    },
    row,
  });
  onLive((e) => {
    if (e.topic !== "erp.stock" || !e.data) return;
    const d = e.data as { product_id?: string; warehouse_id?: string; to_warehouse_id?: string };
    if (!d.product_id) return;
    for (const w of [d.warehouse_id, d.to_warehouse_id]) {
      if (!w || (wh && w !== wh)) continue;
      api.page<StockItem>("/v1/erp/stock", { product_id: d.product_id, warehouse_id: w })
        .then((p) => { for (const s of p.items) list.upsert(key(s), !list.rows.has(s.product_id + ":" + s.warehouse_id)); })
        .catch(() => undefined);
    }
  });
  mount(root, page("Stock", alert.el, h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "wh-pick" }, "Warehouse"), sel)), list.el));
  await list.load();
}

const ORDER_STATUSES = ["draft", "confirmed", "invoiced", "paid", "shipped", "completed", "cancelled"];

export async function ordersView(root: HTMLElement): Promise<void> {
  const st = sessionStorage.getItem("trellis.console.orders") || "";
  const sel = h("select", { id: "ord-status" }, h("option", { value: "" }, "Any status"),
    ORDER_STATUSES.map((s) => h("option", { value: s, selected: s === st }, s)));
  sel.addEventListener("change", () => { sessionStorage.setItem("trellis.console.orders", sel.value); void ordersView(root); });
  const list = pagedList<Order>({
    label: "Orders", table: true, testid: "orders", empty: "No orders.",
    head: ["Order", "Status", "Total", "Lines", "Created"],
    fetch: (cursor) => api.page<Order>("/v1/erp/orders", { limit: 50, cursor, sort: "-created_at", status: st || undefined }),
    row: (o) => h("tr", { "data-testid": "order-row" },
      h("td", { "data-label": "Order" }, link("#/orders/" + o.id, o.number || "Order " + o.id.slice(-6))),
      h("td", { "data-label": "Status" }, badge(o.status)),
      h("td", { "data-label": "Total", class: "num" }, money(o.total)),
      h("td", { "data-label": "Lines", class: "num" }, String(o.lines?.length || 0)),
      h("td", { "data-label": "Created" }, time(o.created_at))),
  });
  onLive((e) => {
    if (e.topic !== "erp.orders" || !e.data) return;
    const o = e.data as Order;
    if (list.rows.has(o.id)) list.upsert(o);
    else if (e.event === "erp.order.created" && (!st || o.status === st)) list.upsert(o, true);
  }, () => void ordersView(root));
  mount(root, page("Orders", h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "ord-status" }, "Status"), sel)), list.el));
  await list.load();
}

export async function orderView(root: HTMLElement, id: string): Promise<void> {
  const loaded = await loadRecord<Order>(root, "Order", "/v1/erp/orders/" + id);
  if (!loaded) return;
  const { alert } = loaded;
  let order = loaded.record;
  let invoice: Invoice | null = null;
  const loadInvoice = async () => {
    if (!can("erp.invoices.read")) return;
    try {
      invoice = (await api.page<Invoice>("/v1/erp/invoices", { order_id: id, limit: 1 })).items[0] || null;
    } catch { invoice = null; }
  };
  await loadInvoice();
  const head = h("div", { class: "order-head" });
  const lines = h("tbody");
  const actions = h("div", { class: "panel", "aria-live": "polite" });
  const renderHead = () => {
    clear(head);
    head.append(dl([
      ["Status", badge(order.status, "order-status")],
      ["Total", money(order.total)],
      ["Client", order.client_id ? link("#/clients/" + order.client_id, "Open client") : ""],
      ["Created", time(order.created_at)],
      ["Invoice", invoice ? [invoice.number, " ", badge(invoice.status), " ", invoice.paid ? "paid " + money(invoice.paid) : ""] : "none yet"],
    ]));
  };
  const renderLines = () => {
    clear(lines);
    for (const l of order.lines || []) {
      const name = h("td", { "data-label": "Product" });
      const q = h("td", { "data-label": "Quantity", class: "num" }, String(l.quantity));
      productCell(l.product_id, name, (p) => { q.textContent = qty(l.quantity, p); });
      lines.append(h("tr", null, name, q, h("td", { "data-label": "Unit price", class: "num" }, money(l.unit_price)),
        h("td", { "data-label": "Tax", class: "num" }, money(l.tax)), h("td", { "data-label": "Total", class: "num" }, money(l.total || l.net))));
    }
  };
  const step = (label: string, fn: () => Promise<unknown>) => {
    const b = h("button", { type: "button", class: "primary" }, label);
    b.addEventListener("click", async () => {
      b.disabled = true;
      alert.clear();
      try {
        await fn();
        await refresh();
      } catch (e) {
        alert.show(e);
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };
  const renderActions = () => {
    clear(actions);
    actions.append(h("h2", null, "Next step"));
    const s = order.status;
    const row = h("div", { class: "actions" });
    if (s === "draft" && can("erp.orders.write")) row.append(step("Confirm order", () => api.request("POST", "/v1/erp/orders/" + id + "/confirm", { idempotencyKey: true })));
    if (s === "confirmed" && can("erp.invoices.write")) row.append(step("Create invoice", () => api.request("POST", "/v1/erp/orders/" + id + "/invoice", { idempotencyKey: true })));
    if ((s === "invoiced" || s === "confirmed" && invoice) && can("erp.payments.write") && invoice) {
      const open = invoice.total.amount - (invoice.paid?.amount || 0);
      const f = form([
        { name: "amount", label: "Amount (" + invoice.total.currency + ")", value: (open / 100).toFixed(2), inputmode: "decimal" },
        { name: "method", label: "Method", type: "select", options: ["bank", "card", "cash"] },
        { name: "reference", label: "Reference" },
      ], "Record payment", async (v) => {
        const n = Math.round(Number(String(v.amount).replace(",", ".")) * 100);
        const body: Record<string, unknown> = { amount: { amount: Number.isFinite(n) ? n : v.amount, currency: invoice!.total.currency }, method: v.method };
        if (v.reference) body.reference = v.reference;
        await api.request("POST", "/v1/erp/orders/" + id + "/payments", { body, idempotencyKey: true });
        await refresh();
      }, { label: "Record payment", cls: "grid" });
      actions.append(f.form);
    }
    if ((s === "paid" || s === "invoiced" || s === "confirmed") && can("erp.shipments.write")) {
      row.append(step("Ship all", () => api.request("POST", "/v1/erp/orders/" + id + "/shipments",
        { body: { lines: order.lines.map((l) => ({ product_id: l.product_id, quantity: l.quantity })) }, idempotencyKey: true })));
    }
    if (["draft", "confirmed", "invoiced"].includes(s) && can("erp.orders.write")) {
      const c = step("Cancel order", () => api.request("POST", "/v1/erp/orders/" + id + "/cancel"));
      c.className = "danger";
      row.append(c);
    }
    if (row.children.length) actions.append(row);
    else if (!actions.querySelector("form")) actions.append(h("p", null, "Nothing to do here."));
  };
  const renderAll = () => { renderHead(); renderLines(); renderActions(); };
  const refresh = async () => {
    const o = await api.request<Order>("GET", "/v1/erp/orders/" + id);
    if (o.version >= order.version) order = o;
    await loadInvoice();
    renderAll();
  };
  onLive((e) => {
    if (e.entity_id === id && e.topic === "erp.orders" && e.data && e.data.version >= order.version) {
      const statusChanged = e.data.status !== order.status;
      order = e.data as Order;
      renderHead();
      renderLines();
      if (statusChanged) void loadInvoice().then(renderAll);
    }
  }, () => void refresh());
  renderAll();
  mount(root, page("Order " + (order.number || id.slice(-6)), h("p", null, link("#/orders", "Back to orders")), alert.el, head,
    h("table", { class: "list", "aria-label": "Order lines" },
      h("thead", null, h("tr", null, ["Product", "Quantity", "Unit price", "Tax", "Total"].map((c) => h("th", { scope: "col" }, c)))), lines),
    actions));
}
