// What every screen shares: the SDK client, the signed-in user, one live
// connection, the current view's clean-ups, and a list that pages with cursors.
import { Trellis, browserStorage, type LiveEvent, type Page } from "../../sdk/src/index";
import { h, clear, alertBox, append, type Child } from "./dom";

export const api = new Trellis({ storage: browserStorage("trellis.console.") });

export interface Me { user: { id: string; name: string; email: string; roles: string[] }; tenant: { id: string; name: string; slug: string }; permissions: string[] }
export const session: { me: Me | null } = { me: null };

// A permission check as the server reads it: "crm.leads.read" is held by
// "crm.leads.read", "crm.leads.read:own", "crm.leads.*", "crm.*" or "*".
export function can(perm: string): boolean {
  const ps = session.me?.permissions || [];
  for (const raw of ps) {
    const p = raw.split(":")[0];
    if (p === perm || p === "*") return true;
    if (p.endsWith(".*") && perm.startsWith(p.slice(0, -1))) return true;
  }
  return false;
}

// The topics the console listens to, each only when the user may read it.
const TOPICS: [string, string][] = [["crm.leads", "crm.leads.read"], ["crm.deals", "crm.deals.read"],
  ["erp.orders", "erp.orders.read"], ["erp.stock", "erp.stock.read"], ["bpm.tasks", "bpm.tasks.read"]];

type Live = ReturnType<Trellis["live"]>;
let live: Live | null = null;
const liveFns = new Set<(e: LiveEvent) => void>();
const resyncFns = new Set<() => void>();
const stateFns = new Set<(s: string) => void>();
let liveState = "closed";

export function startLive(): void {
  if (live || !session.me) return;
  const topics = TOPICS.filter(([, p]) => can(p)).map(([t]) => t);
  live = api.live({ topics, resumeKey: "console:" + session.me.user.id });
  live.on("event", (e) => { for (const fn of [...liveFns]) fn(e); });
  live.on("resync_required", () => { for (const fn of [...resyncFns]) fn(); });
  live.on("state", (s) => { liveState = s; for (const fn of [...stateFns]) fn(s); });
  liveState = live.state;
  for (const fn of [...stateFns]) fn(liveState);
}

export function stopLive(): void {
  live?.close();
  live = null;
}

export function onLiveState(fn: (s: string) => void): void {
  stateFns.add(fn);
  fn(liveState);
}

// Clean-ups of the view on screen; the router runs them when it leaves.
let cleanups: (() => void)[] = [];
export function onLeave(fn: () => void): void {
  cleanups.push(fn);
}
export function leaveView(): void {
  const c = cleanups;
  cleanups = [];
  for (const fn of c) fn();
}

// A view's live events, removed when the view goes.
export function onLive(fn: (e: LiveEvent) => void, resync?: () => void): void {
  liveFns.add(fn);
  if (resync) resyncFns.add(resync);
  onLeave(() => { liveFns.delete(fn); if (resync) resyncFns.delete(resync); });
}

// A list that pages with the API's cursors and keeps one row per id, so a
// live event for a row on screen updates it instead of adding it twice.
export interface PagedList<T extends { id: string }> {
  el: HTMLElement;
  body: HTMLElement;
  rows: Map<string, HTMLElement>;
  items: Map<string, T>;
  load(): Promise<void>;
  upsert(item: T, top?: boolean): HTMLElement | null;
  remove(id: string): void;
}

export function pagedList<T extends { id: string }>(opts: {
  label: string;
  fetch: (cursor: string | null) => Promise<Page<T>>;
  row: (item: T) => HTMLElement;
  head?: string[];
  empty: string;
  table?: boolean;
  testid?: string;
}): PagedList<T> {
  const rows = new Map<string, HTMLElement>();
  const items = new Map<string, T>();
  const alert = alertBox();
  const body = opts.table ? h("tbody") : h("ul", { class: "cards", "aria-label": opts.label });
  const container = opts.table
    ? h("table", { class: "list", "aria-label": opts.label, "data-testid": opts.testid },
      opts.head ? h("thead", null, h("tr", null, opts.head.map((c) => h("th", { scope: "col" }, c)))) : null, body)
    : body;
  if (!opts.table && opts.testid) container.setAttribute("data-testid", opts.testid);
  const empty = h("p", { class: "empty", hidden: true }, opts.empty);
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const status = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const el = h("div", { class: "paged" }, alert.el, container, empty, more, status);
  let cursor: string | null = null;
  let loading = false;
  const list: PagedList<T> = {
    el, body, rows, items,
    async load() {
      if (loading) return;
      loading = true;
      more.disabled = true;
      el.setAttribute("aria-busy", "true");
      try {
        const page = await opts.fetch(cursor);
        const frag = document.createDocumentFragment();
        for (const it of page.items) {
          if (rows.has(it.id)) { list.upsert(it); continue; }
          const r = opts.row(it);
          r.dataset.id = it.id;
          rows.set(it.id, r);
          items.set(it.id, it);
          frag.appendChild(r);
        }
        body.appendChild(frag);
        cursor = page.next_cursor;
        more.hidden = !cursor;
        empty.hidden = rows.size > 0;
        status.textContent = rows.size + " shown";
        alert.clear();
      } catch (e) {
        alert.show(e);
      } finally {
        loading = false;
        more.disabled = false;
        el.removeAttribute("aria-busy");
      }
    },
    upsert(item, top = false) {
      const old = rows.get(item.id);
      const prev = items.get(item.id) as { version?: number } | undefined;
      const ver = (item as { version?: number }).version;
      if (old && prev && typeof prev.version === "number" && typeof ver === "number" && ver < prev.version) return old;
      const r = opts.row(item);
      r.dataset.id = item.id;
      if (old) old.replaceWith(r);
      else if (top) body.insertBefore(r, body.firstChild);
      else body.appendChild(r);
      rows.set(item.id, r);
      items.set(item.id, item);
      empty.hidden = true;
      return r;
    },
    remove(id) {
      rows.get(id)?.remove();
      rows.delete(id);
      items.delete(id);
      empty.hidden = rows.size > 0;
    },
  };
  more.addEventListener("click", () => void list.load());
  return list;
}

// The view's frame: a heading (focused on navigation, for screen readers) and content.
export function page(title: string, ...content: (Child | Child[])[]): HTMLElement {
  document.title = title + " - Trellis";
  const h1 = h("h1", { tabindex: -1 }, title);
  const sec = h("section", { class: "view", "aria-labelledby": "" });
  h1.id = "view-title";
  sec.setAttribute("aria-labelledby", "view-title");
  append(sec, [h1, ...content]);
  return sec;
}

export function mount(root: HTMLElement, view: HTMLElement): void {
  clear(root);
  root.appendChild(view);
}

// A record's view starts here: a "Loading..." frame, then the record, or
// the problem shown in that frame and null. The alert box is the view's.
export async function loadRecord<T>(root: HTMLElement, title: string, path: string): Promise<{ record: T; alert: ReturnType<typeof alertBox> } | null> {
  const alert = alertBox();
  mount(root, page(title, alert.el, h("p", { "aria-busy": "true" }, "Loading...")));
  try {
    return { record: await api.request<T>("GET", path), alert };
  } catch (e) {
    alert.show(e);
    return null;
  }
}

// A short name for a user id, from one page of the user list (cached).
const names = new Map<string, string>();
let namesLoaded: Promise<void> | null = null;
export function userName(id: string | null | undefined): Promise<string> {
  if (!id) return Promise.resolve("");
  if (!can("system.users.read")) return Promise.resolve(id === session.me?.user.id ? session.me.user.name : "");
  if (!namesLoaded) {
    namesLoaded = api.page<{ id: string; name: string }>("/v1/users", { limit: 200 })
      .then((p) => { for (const u of p.items) names.set(u.id, u.name); })
      .catch(() => undefined);
  }
  return namesLoaded.then(() => names.get(id) || "");
}

export function flash(msg: string): void {
  const el = document.getElementById("flash");
  if (!el) return;
  el.textContent = msg;
}
