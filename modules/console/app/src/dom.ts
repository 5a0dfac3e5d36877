// DOM helpers: every piece of data reaches the page as text (textContent or a
// Text node), never as markup; no inline styles (the CSP forbids them).
import { Problem } from "../../sdk/src/index";

export type Child = Node | string | number | null | undefined | false;
type Attr = string | number | boolean | null | undefined | EventListener;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Record<string, Attr> | null = null, ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const k in attrs) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v as EventListener);
      else if (k === "style") throw new Error("inline styles are not allowed");
      else if (k === "value" && "value" in el) (el as HTMLInputElement).value = String(v);
      else if (k === "checked" && el instanceof HTMLInputElement) el.checked = v === true;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children) {
    if (Array.isArray(c)) append(el, c);
    else if (c === null || c === undefined || c === false) continue;
    else if (typeof c === "string" || typeof c === "number") el.appendChild(document.createTextNode(String(c)));
    else el.appendChild(c);
  }
}

export function clear(el: Node): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

let seq = 0;
export function uid(prefix: string): string {
  return prefix + "-" + (++seq).toString(36);
}

export function money(m: { amount: number; currency: string } | null | undefined): string {
  if (!m || typeof m.amount !== "number") return "";
  const neg = m.amount < 0;
  const a = Math.abs(m.amount);
  const major = Math.floor(a / 100).toLocaleString("en-US");
  return (neg ? "-" : "") + major + "." + String(a % 100).padStart(2, "0") + " " + m.currency;
}

export function when(ts: string | null | undefined): string {
  if (!ts) return "";
  const d = new Date(ts);
  if (isNaN(d.getTime())) return ts;
  return d.toISOString().slice(0, 16).replace("T", " ");
}

export function time(ts: string | null | undefined): HTMLElement {
  return h("time", { datetime: ts || "" }, when(ts));
}

export function badge(status: string | null | undefined, testid?: string): HTMLElement {
  const s = status || "unknown";
  return h("span", { class: "badge badge-" + s.replace(/[^a-z_]/g, ""), "data-testid": testid }, s.replace(/_/g, " "));
}

export function describe(err: unknown): string {
  if (err instanceof Problem) return err.detail || err.title || "Request failed (" + err.status + ")";
  if (err instanceof Error) return err.message;
  return String(err);
}

// An alert area that shows a problem's detail (and field errors no field took).
export function alertBox(): { el: HTMLElement; show(err: unknown, rest?: { field: string; message: string }[]): void; ok(msg: string): void; clear(): void } {
  const el = h("div", { class: "alert", role: "alert", hidden: true });
  return {
    el,
    show(err, rest = []) {
      clear(el);
      el.className = "alert alert-error";
      append(el, [h("p", null, describe(err))]);
      if (rest.length) append(el, [h("ul", null, rest.map((e) => h("li", null, e.field + ": " + e.message)))]);
      el.hidden = false;
    },
    ok(msg) {
      clear(el);
      el.className = "alert alert-ok";
      append(el, [h("p", null, msg)]);
      el.hidden = false;
    },
    clear() {
      clear(el);
      el.hidden = true;
    },
  };
}

export interface FieldSpec {
  name: string;
  label: string;
  type?: "text" | "email" | "tel" | "password" | "number" | "select" | "checkbox" | "textarea" | "date" | "url";
  options?: (string | [string, string])[];
  value?: string | boolean;
  required?: boolean;
  autocomplete?: string;
  hint?: string;
  inputmode?: string;
}

export interface FormHandle {
  form: HTMLFormElement;
  values(): Record<string, string | boolean>;
  setErrors(err: unknown): void;
  clearErrors(): void;
  alert: ReturnType<typeof alertBox>;
  field(name: string): HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | undefined;
}

// A form whose fields show their own errors: a Problem's field errors appear
// next to the field they name (aria-describedby), the detail above the button.
export function form(fields: FieldSpec[], submitLabel: string,
  onSubmit: (values: Record<string, string | boolean>, f: FormHandle) => Promise<void>, opts: { label?: string; cls?: string } = {}): FormHandle {
  const inputs = new Map<string, HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>();
  const errs = new Map<string, HTMLElement>();
  const alert = alertBox();
  const button = h("button", { type: "submit", class: "primary" }, submitLabel);
  const f = h("form", { class: "form " + (opts.cls || ""), novalidate: true, "aria-label": opts.label || null });
  for (const s of fields) {
    const id = uid("f");
    const errId = id + "-err";
    const err = h("p", { class: "field-error", id: errId, hidden: true });
    errs.set(s.name, err);
    let input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
    if (s.type === "select") {
      input = h("select", { id, name: s.name, "aria-describedby": errId },
        (s.options || []).map((o) => {
          const [v, l] = Array.isArray(o) ? o : [o, o];
          return h("option", { value: v, selected: s.value === v }, l);
        }));
    } else if (s.type === "textarea") {
      input = h("textarea", { id, name: s.name, rows: 3, "aria-describedby": errId });
      if (typeof s.value === "string") input.value = s.value;
    } else {
      input = h("input", {
        id, name: s.name, type: s.type || "text", autocomplete: s.autocomplete || (s.type === "checkbox" ? null : "off"),
        inputmode: s.inputmode, "aria-describedby": errId, required: s.required,
      });
      if (s.type === "checkbox") (input as HTMLInputElement).checked = s.value === true;
      else if (typeof s.value === "string") input.value = s.value;
    }
    inputs.set(s.name, input);
    const label = h("label", { for: id }, s.label, s.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null);
    const hint = s.hint ? h("p", { class: "hint" }, s.hint) : null;
    f.appendChild(h("div", { class: s.type === "checkbox" ? "field field-check" : "field" },
      s.type === "checkbox" ? [input, label] : [label, input], hint, err));
  }
  append(f, [alert.el, h("div", { class: "actions" }, button)]);
  const handle: FormHandle = {
    form: f,
    alert,
    field: (n) => inputs.get(n),
    values() {
      const v: Record<string, string | boolean> = {};
      for (const [n, i] of inputs) v[n] = i instanceof HTMLInputElement && i.type === "checkbox" ? i.checked : i.value.trim();
      return v;
    },
    clearErrors() {
      alert.clear();
      for (const [n, e] of errs) {
        e.hidden = true;
        e.textContent = "";
        inputs.get(n)?.removeAttribute("aria-invalid");
      }
    },
    setErrors(err) {
      handle.clearErrors();
      const rest: { field: string; message: string }[] = [];
      let first: HTMLElement | undefined;
      if (err instanceof Problem) {
        for (const e of err.errors) {
          const key = errs.has(e.field) ? e.field : errs.has(e.field.split(".").pop() || "") ? e.field.split(".").pop()! : null;
          const box = key ? errs.get(key) : undefined;
          if (key && box) {
            box.textContent = box.textContent ? box.textContent + "; " + e.message : e.message;
            box.hidden = false;
            const inp = inputs.get(key)!;
            inp.setAttribute("aria-invalid", "true");
            first = first || inp;
          } else rest.push(e);
        }
      }
      alert.show(err, rest);
      (first || alert.el).focus?.();
    },
  };
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (button.disabled) return;
    handle.clearErrors();
    button.disabled = true;
    f.setAttribute("aria-busy", "true");
    try {
      await onSubmit(handle.values(), handle);
    } catch (e) {
      handle.setErrors(e);
    } finally {
      button.disabled = false;
      f.removeAttribute("aria-busy");
    }
  });
  return handle;
}

export function dl(pairs: [string, Child | Child[]][]): HTMLElement {
  const d = h("dl", { class: "facts" });
  for (const [k, v] of pairs) append(d, [h("div", null, h("dt", null, k), h("dd", null, v))]);
  return d;
}

export function link(href: string, text: Child, attrs: Record<string, Attr> = {}): HTMLAnchorElement {
  return h("a", { href, ...attrs }, text);
}
