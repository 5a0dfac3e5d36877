// The BPM inbox: the user's open steps (assigned, and offered to their roles),
// arriving live; a step opens with its instructions and its form.
import { api, onLive, page, mount, pagedList, session } from "./ctx";
import { h, alertBox, form, time, clear, dl, type FieldSpec } from "./dom";

interface FormField { key: string; type: string; label?: string; required?: boolean; options?: string[] }
interface Task {
  id: string; version?: number; instance_id: string; node_id: string; name: string; instructions?: string | null; assignee_id: string | null;
  candidate_roles?: string[]; due_at: string | null; status: string; form?: FormField[]; subject?: { type: string; id: string } | null; created_at?: string;
}

function mine(t: Task): boolean {
  const me = session.me;
  if (!me || t.status !== "open") return false;
  if (t.assignee_id) return t.assignee_id === me.user.id;
  return (t.candidate_roles || []).some((r) => me.user.roles.includes(r));
}

export async function inboxView(root: HTMLElement, openId: string): Promise<void> {
  const row = (t: Task) => h("li", { class: "task" + (t.id === openId ? " current" : ""), "data-testid": "task" },
    h("a", { href: "#/inbox/" + t.id, "aria-current": t.id === openId ? "true" : null }, t.name),
    h("span", { class: "meta" }, t.assignee_id ? "assigned to you" : "offered to your role", t.due_at ? [", due ", time(t.due_at)] : ""));
  const assigned = pagedList<Task>({
    label: "Assigned to me", testid: "inbox", empty: "Nothing assigned to you.",
    fetch: (cursor) => api.page<Task>("/v1/bpm/tasks", { assignee: "me", status: "open", limit: 50, cursor, sort: "-created_at" }),
    row,
  });
  const offered = pagedList<Task>({
    label: "Offered to my roles", testid: "offered", empty: "Nothing offered to your roles.",
    fetch: (cursor) => api.page<Task>("/v1/bpm/tasks", { candidate: "me", status: "open", limit: 50, cursor, sort: "-created_at" }),
    row,
  });
  const status = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const detail = h("div", { class: "task-detail" });

  onLive((e) => {
    if (e.topic !== "bpm.tasks" || !e.data) return;
    const t = e.data as Task;
    if (mine(t)) {
      const target = t.assignee_id ? assigned : offered;
      const other = t.assignee_id ? offered : assigned;
      other.remove(t.id);
      const fresh = !target.rows.has(t.id);
      target.upsert(t, fresh)?.classList.toggle("fresh", fresh);
      if (fresh) status.textContent = "New step: " + t.name;
    } else {
      assigned.remove(t.id);
      offered.remove(t.id);
    }
  }, () => void inboxView(root, openId));

  mount(root, page("Inbox", status,
    h("div", { class: "split" },
      h("div", { class: "lists" },
        h("section", { "aria-labelledby": "as-h" }, h("h2", { id: "as-h" }, "Assigned to me"), assigned.el),
        h("section", { "aria-labelledby": "of-h" }, h("h2", { id: "of-h" }, "Offered to my roles"), offered.el)),
      detail)));
  await Promise.all([assigned.load(), offered.load()]);
  if (openId) await taskDetail(detail, openId, () => { assigned.remove(openId); offered.remove(openId); });
}

function fieldOf(f: FormField): FieldSpec {
  const label = f.label || f.key.replace(/_/g, " ");
  const name = "data." + f.key;
  switch (f.type) {
    case "bool": return { name, label, type: "checkbox" };
    case "int": return { name, label, required: f.required, inputmode: "numeric", hint: "A whole number" };
    case "decimal": return { name, label, required: f.required, inputmode: "decimal", hint: "A number, e.g. 12.50" };
    case "date": return { name, label, required: f.required, type: "date" };
    case "enum": return { name, label, required: f.required, type: "select", options: [["", "Choose..."], ...(f.options || []).map((o): [string, string] => [o, o])] };
    default: return { name, label, required: f.required, type: "textarea" };
  }
}

async function taskDetail(el: HTMLElement, id: string, done: () => void): Promise<void> {
  const alert = alertBox();
  clear(el);
  el.append(alert.el);
  let t: Task;
  try {
    t = await api.request<Task>("GET", "/v1/bpm/tasks/" + id);
  } catch (e) {
    alert.show(e);
    return;
  }
  const fields = t.form || [];
  const sec = h("section", { class: "panel", "aria-labelledby": "task-h", "data-testid": "task-detail" },
    h("h2", { id: "task-h" }, t.name),
    dl([["Status", t.status], ["Due", time(t.due_at)], ["Subject", t.subject ? t.subject.type + " " + t.subject.id.slice(-6) : ""]]),
    t.instructions ? h("div", { class: "instructions" }, h("h3", null, "Instructions"), h("p", null, t.instructions)) : null);
  el.append(sec);
  if (t.status !== "open") return;
  if (!t.assignee_id) {
    const claim = h("button", { type: "button" }, "Claim");
    claim.addEventListener("click", async () => {
      try {
        await api.request("POST", "/v1/bpm/tasks/" + id + "/claim");
        await taskDetail(el, id, done);
      } catch (e) { alert.show(e); }
    });
    sec.append(h("div", { class: "actions" }, claim));
  }
  const f = form(fields.map(fieldOf), "Complete", async (v) => {
    const data: Record<string, unknown> = {};
    for (const ff of fields) {
      const raw = v["data." + ff.key];
      if (ff.type === "bool") data[ff.key] = raw === true;
      else if (raw === "" || raw === undefined) continue;
      else if (ff.type === "int") data[ff.key] = /^-?\d+$/.test(String(raw)) ? Number(raw) : raw;
      else data[ff.key] = raw;
    }
    await api.request("POST", "/v1/bpm/tasks/" + id + "/complete", { body: { data } });
    done();
    clear(el);
    el.append(h("p", { class: "alert alert-ok", role: "status" }, "Done: " + t.name));
  }, { label: "Step form" });
  sec.append(f.form);
}
