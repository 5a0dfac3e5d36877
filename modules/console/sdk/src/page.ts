// Lists. The contract answers {"items", "next_cursor"}; the changes feed
// answers {"items", "next", "has_more"} and takes the position back as
// `since`. Both become a Page, and iterate() knows which parameter to send.

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** A page and the query parameter that asks for the one after it. */
export interface PageStep<T> {
  page: Page<T>;
  param: "cursor" | "since";
}

export function readPage<T>(body: unknown): PageStep<T> {
  const doc = (body && typeof body === "object" ? body : {}) as Record<string, unknown>;
  const items = (Array.isArray(doc.items) ? doc.items : []) as T[];
  if (!("next_cursor" in doc) && "has_more" in doc) {
    const next = doc.has_more === true && typeof doc.next === "string" ? doc.next : null;
    return { page: { items, next_cursor: next }, param: "since" };
  }
  const cursor = typeof doc.next_cursor === "string" && doc.next_cursor !== "" ? doc.next_cursor : null;
  return { page: { items, next_cursor: cursor }, param: "cursor" };
}
