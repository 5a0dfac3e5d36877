// The console's entry: the shell (header, navigation, live status), the hash
// router, and the session's start and end.
import { api, session, can, startLive, stopLive, onLiveState, leaveView, mount, type Me } from "./ctx";
import { h, clear, form } from "./dom";
import { leadsView, leadView } from "./leads";
import { boardView } from "./board";
import { clientView } from "./clients";
import { stockView, ordersView, orderView } from "./erp";
import { inboxView } from "./inbox";
import { usersView, rolesView, keysView, webhooksView, webhookView } from "./admin";

type View = (root: HTMLElement, arg: string) => void | Promise<void>;
const routes: [RegExp, View, string?][] = [
  [/^\/leads$/, leadsView, "crm.leads.read"],
  [/^\/leads\/([0-9a-f]{24})$/, leadView, "crm.leads.read"],
  [/^\/board$/, boardView, "crm.deals.read"],
  [/^\/clients\/([0-9a-f]{24})$/, clientView, "crm.clients.read"],
  [/^\/stock$/, stockView, "erp.stock.read"],
  [/^\/orders$/, ordersView, "erp.orders.read"],
  [/^\/orders\/([0-9a-f]{24})$/, orderView, "erp.orders.read"],
  [/^\/inbox(?:\/([0-9a-f]{24}))?$/, inboxView, "bpm.tasks.read"],
  [/^\/admin\/users$/, usersView, "system.users.read"],
  [/^\/admin\/roles$/, rolesView, "system.roles.read"],
  [/^\/admin\/api-keys$/, keysView, "system.api_keys.read"],
  [/^\/admin\/webhooks$/, webhooksView, "system.webhooks.read"],
  [/^\/admin\/webhooks\/([0-9a-f]{24})$/, webhookView, "system.webhooks.read"],
];

const NAV: [string, string, string][] = [
  ["#/leads", "Leads", "crm.leads.read"], ["#/board", "Pipeline", "crm.deals.read"],
  ["#/stock", "Stock", "erp.stock.read"], ["#/orders", "Orders", "erp.orders.read"],
  ["#/inbox", "Inbox", "bpm.tasks.read"], ["#/admin/users", "Users", "system.users.read"],
  ["#/admin/roles", "Roles", "system.roles.read"], ["#/admin/api-keys", "API keys", "system.api_keys.read"],
  ["#/admin/webhooks", "Webhooks", "system.webhooks.read"],
];

const app = document.getElementById("app") as HTMLElement;
const header = h("header", { class: "top" });
const main = h("main", { id: "main", tabindex: -1 });
const footer = h("p", { id: "flash", class: "visually-hidden", role: "status", "aria-live": "polite" });
app.append(h("a", { href: "#main", class: "skip" }, "Skip to content"), header, main, footer);
// the skip link must not change the route
app.querySelector(".skip")!.addEventListener("click", (e) => { e.preventDefault(); main.focus(); });

function path(): string {
  const p = location.hash.replace(/^#/, "");
  return p || "/leads";
}

function firstAllowed(): string {
  for (const [href, , perm] of NAV) if (can(perm)) return href;
  return "#/inbox";
}

let liveBadge: HTMLElement | null = null;
function renderShell(): void {
  clear(header);
  if (!session.me) {
    header.append(h("span", { class: "brand" }, "Trellis"));
    return;
  }
  const links = NAV.filter(([, , p]) => can(p)).map(([href, text]) => h("li", null, h("a", { href }, text)));
  const menu = h("button", { type: "button", class: "menu", "aria-expanded": "false", "aria-controls": "nav-list" }, "Menu");
  const list = h("ul", { id: "nav-list" }, links);
  menu.addEventListener("click", () => {
    const open = menu.getAttribute("aria-expanded") !== "true";
    menu.setAttribute("aria-expanded", String(open));
    list.classList.toggle("open", open);
  });
  list.addEventListener("click", (e) => {
    if ((e.target as HTMLElement).tagName === "A") { list.classList.remove("open"); menu.setAttribute("aria-expanded", "false"); }
  });
  liveBadge = h("span", { class: "live", role: "status", "data-testid": "live-state" });
  const out = h("button", { type: "button", class: "link" }, "Sign out");
  out.addEventListener("click", async () => {
    stopLive();
    await api.logout();
    session.me = null;
    location.hash = "#/login";
    renderShell();
  });
  header.append(
    h("span", { class: "brand" }, "Trellis"),
    menu,
    h("nav", { "aria-label": "Main" }, list),
    h("div", { class: "who" }, liveBadge, h("span", { class: "user" }, session.me.user.name), out),
  );
  markNav();
}

function markNav(): void {
  const p = "#" + path();
  for (const a of header.querySelectorAll("nav a")) {
    const href = a.getAttribute("href") || "";
    if (p === href || p.startsWith(href + "/")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// how often the live connection was lost (tests and support read data-drops)
let drops = 0;
let wasOpen = false;
onLiveState((s) => {
  if (wasOpen && s !== "open") drops++;
  wasOpen = s === "open";
  if (!liveBadge) return;
  liveBadge.dataset.drops = String(drops);
  liveBadge.textContent = s === "open" ? "Live" : s === "connecting" ? "Reconnecting" : "Offline";
  liveBadge.className = "live live-" + s;
});

function loginView(root: HTMLElement): void {
  const last = localStorage.getItem("trellis.console.tenant") || "";
  const f = form([
    { name: "tenant_slug", label: "Company (tenant)", required: true, value: last, autocomplete: "organization" },
    { name: "email", label: "Email", type: "email", required: true, autocomplete: "username" },
    { name: "password", label: "Password", type: "password", required: true, autocomplete: "current-password" },
  ], "Sign in", async (v) => {
    await api.login(String(v.tenant_slug), String(v.email), String(v.password));
    localStorage.setItem("trellis.console.tenant", String(v.tenant_slug));
    await signedIn();
    const back = sessionStorage.getItem("trellis.console.back");
    sessionStorage.removeItem("trellis.console.back");
    location.hash = back && back !== "#/login" ? back : firstAllowed();
  }, { label: "Sign in" });
  document.title = "Sign in - Trellis";
  const card = h("section", { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", tabindex: -1 }, "Sign in to Trellis"), f.form);
  mount(root, card);
  (f.field(last ? "email" : "tenant_slug") as HTMLInputElement).focus();
}

async function signedIn(): Promise<void> {
  session.me = await api.me() as Me;
  renderShell();
  startLive();
}

let routing = 0;
async function route(): Promise<void> {
  const n = ++routing;
  leaveView();
  const p = path();
  if (!api.signedIn || !session.me) {
    if (p !== "/login") {
      sessionStorage.setItem("trellis.console.back", "#" + p);
      location.replace("#/login");
      return;
    }
    loginView(main);
    return;
  }
  if (p === "/login") { location.replace(firstAllowed()); return; }
  markNav();
  for (const [re, view, perm] of routes) {
    const m = re.exec(p);
    if (!m) continue;
    if (perm && !can(perm)) break;
    await view(main, m[1] || "");
    if (n === routing) {
      const t = main.querySelector<HTMLElement>("h1");
      if (t && document.activeElement === document.body) t.focus({ preventScroll: true });
    }
    return;
  }
  document.title = "Not found - Trellis";
  mount(main, h("section", { class: "view" }, h("h1", null, "Not here"),
    h("p", null, "This page does not exist or you may not open it. "), h("a", { href: firstAllowed() }, "Go to the start")));
}

api.onSessionEnded(() => {
  stopLive();
  session.me = null;
  renderShell();
  if (path() !== "/login") {
    sessionStorage.setItem("trellis.console.back", "#" + path());
    location.hash = "#/login";
  }
});

window.addEventListener("hashchange", () => void route());

async function boot(): Promise<void> {
  renderShell();
  if (await api.restore()) {
    try {
      await signedIn();
    } catch {
      session.me = null;
    }
  }
  await route();
}
void boot();
