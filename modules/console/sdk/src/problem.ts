// Errors the SDK throws. A request the server answered with an error status
// becomes a Problem (RFC 9457 problem+json, or whatever the body was); a
// request that got no answer at all becomes a NetworkError. Aborts through an
// AbortSignal are rethrown as the platform's own AbortError, untouched.

export interface FieldError {
  field: string;
  message: string;
}

const ERROR_TYPE_PREFIX = "https://trellis.dev/errors/";

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function fieldErrorsOf(v: unknown): FieldError[] {
  if (!Array.isArray(v)) return [];
  const out: FieldError[] = [];
  for (const e of v) {
    if (e && typeof e === "object" && typeof (e as FieldError).field === "string")
      out.push({ field: (e as FieldError).field, message: str((e as FieldError).message) });
  }
  return out;
}

export class Problem extends Error {
  /** HTTP status of the answer. */
  status: number;
  /** The problem type URI ("about:blank" when the body had none). */
  type: string;
  /** The stable part of a Trellis type: "validation" for .../errors/validation; "" otherwise. */
  slug: string;
  title: string;
  detail: string;
  /** Per-field validation errors, in the server's order. */
  errors: FieldError[];
  /** The parsed JSON body, or the text when it was not JSON. */
  body: unknown;
  /** X-Request-Id of the answer, to quote in a bug report. */
  requestId: string | null;
  /** Seconds from Retry-After (429, 503), when the server sent it. */
  retryAfter: number | null;

  constructor(status: number, body: unknown, statusText = "", requestId: string | null = null,
    retryAfter: number | null = null) {
    const doc = body && typeof body === "object" ? (body as Record<string, unknown>) : {};
    const type = str(doc.type) || "about:blank";
    const title = str(doc.title) || statusText || `HTTP ${status}`;
    /* a text body (a proxy's HTML page, say) is shown as the detail, cut short */
    const detail = str(doc.detail) || (typeof body === "string" ? body.trim().slice(0, 300) : "");
    super(detail ? `${title}: ${detail}` : title);
    this.name = "Problem";
    this.status = typeof doc.status === "number" ? doc.status : status;
    this.type = type;
    this.slug = type.startsWith(ERROR_TYPE_PREFIX) ? type.slice(ERROR_TYPE_PREFIX.length) : "";
    this.title = title;
    this.detail = detail;
    this.errors = fieldErrorsOf(doc.errors);
    this.body = body;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }

  /** { field: message } for forms; a field named twice keeps both messages. */
  fieldErrors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of this.errors) out[e.field] = e.field in out ? `${out[e.field]}; ${e.message}` : e.message;
    return out;
  }
}

/** The request got no HTTP answer (offline, DNS, TLS, connection reset, CORS). */
export class NetworkError extends Error {
  cause: unknown;

  constructor(message: string, cause?: unknown) {
    super(message);
    this.name = "NetworkError";
    this.cause = cause;
  }
}

/** Retry-After as seconds: delta-seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, nowMs: number): number | null {
  if (value === null || value.trim() === "") return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/** Reads an error answer into a Problem whatever its content type. */
export async function problemFromResponse(res: Response, nowMs: number): Promise<Problem> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    /* the body broke off: the status alone still says what happened */
  }
  let body: unknown = text;
  const ct = res.headers.get("content-type") || "";
  if (/json/i.test(ct) && text) {
    try {
      body = JSON.parse(text);
    } catch {
      /* keep the text */
    }
  }
  return new Problem(res.status, body, res.statusText, res.headers.get("x-request-id"),
    parseRetryAfter(res.headers.get("retry-after"), nowMs));
}
