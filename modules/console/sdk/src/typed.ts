// Typed calls derived from the generated OpenAPI types (generated/api.d.ts,
// made by build.mjs from the document the server serves). Nothing here names
// a resource: the paths, parameters, bodies and answers all come from
// `paths`, so a wrong path, a missing path parameter or a misspelt body field
// is a compile error, and a server change shows up at the next build.

import type { components, paths } from "./generated/api";
import type { Page } from "./page";

export type { components, paths };
export type Method = "get" | "put" | "post" | "patch" | "delete";
type Query = Record<string, string | number | boolean | undefined | null>;

/** The paths that have an operation for `M`. */
export type PathsFor<M extends Method> = {
  [P in keyof paths]: paths[P] extends { [K in M]: object } ? P : never;
}[keyof paths];

/** The operation object of `M` on `P`. */
export type Operation<P extends keyof paths, M extends Method> = paths[P] extends { [K in M]: infer O } ? O : never;

type Params<O> = O extends { parameters: infer X } ? X : {};
type PathPart<O> = Params<O> extends { path: infer X } ? ([X] extends [never] ? { path?: undefined } : { path: X })
  : { path?: undefined };
type QueryOf<O> = Params<O> extends { query?: infer Q } ? NonNullable<Q> : never;
type QueryPart<O> = [QueryOf<O>] extends [never] ? { query?: undefined }
  : Params<O> extends { query: object } ? { query: QueryOf<O> } : { query?: QueryOf<O> };

/* JSON when the operation takes or gives JSON; the other media type (BPMN XML) as its own type */
type Content<C> = C extends { "application/json": infer B } ? B : C[keyof C];
type BodyOf<O> = O extends { requestBody?: infer R } ? NonNullable<R> : never;
type BodyPart<O> = [BodyOf<O>] extends [never] ? { body?: undefined }
  : O extends { requestBody: { content: infer C } } ? { body: Content<C> }
  : BodyOf<O> extends { content: infer C } ? { body?: Content<C> } : { body?: undefined };

/** The options of one typed call: what the operation needs, plus the usual extras. */
export type CallInit<O> = PathPart<O> & QueryPart<O> & BodyPart<O> & {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  idempotencyKey?: string | boolean;
  ifMatch?: string | number;
};
/* the options argument may be left out when nothing in it is required */
type Args<O> = {} extends CallInit<O> ? [init?: CallInit<O>] : [init: CallInit<O>];

type Responses<O> = O extends { responses: infer R } ? R : never;
type SuccessOf<R> = R[Extract<keyof R, 200 | 201 | 202 | 203>] extends infer S
  ? S extends { content: infer C } ? Content<C> : never : never;
/** What a successful call answers: the 2xx body's type, undefined for 204. */
export type Answer<O> = [SuccessOf<Responses<O>>] extends [never]
  ? (204 extends keyof Responses<O> ? undefined : unknown) : SuccessOf<Responses<O>>;

/** GET paths that answer a page ({items, next_cursor}). */
export type ListPaths = {
  [P in PathsFor<"get">]: Answer<Operation<P, "get">> extends { items: unknown[]; next_cursor: unknown } ? P : never;
}[PathsFor<"get">];
/** The item type of a list path. */
export type ItemOf<P extends ListPaths> = Answer<Operation<P, "get">> extends { items: (infer I)[] } ? I : never;

/** Schemas by name: Schema<"Lead">. */
export type Schema<N extends keyof components["schemas"]> = components["schemas"][N];

/* The untyped calls the typed ones are made of (implemented by Trellis). */
export interface Requester {
  request<T>(method: string, path: string, opts?: {
    query?: Query; body?: unknown; idempotencyKey?: string | boolean; ifMatch?: string | number;
    headers?: Record<string, string>; signal?: AbortSignal;
  }): Promise<T>;
  page<T>(path: string, query?: Query): Promise<Page<T>>;
  iterate<T>(path: string, query?: Query): AsyncIterableIterator<T>;
}

interface AnyInit {
  path?: Record<string, string | number>;
  query?: unknown;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  idempotencyKey?: string | boolean;
  ifMatch?: string | number;
}

/** "/v1/crm/leads/{id}" with {id: "ab12"} -> "/v1/crm/leads/ab12". */
export function fillPath(template: string, params: Record<string, string | number> = {}): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const v = params[name];
    if (v === undefined || v === null || v === "") throw new TypeError(`path parameter "${name}" is missing`);
    return encodeURIComponent(String(v));
  });
}

export class Api {
  /** @internal */
  constructor(private readonly client: Requester) {}

  get<P extends PathsFor<"get">>(path: P, ...args: Args<Operation<P, "get">>): Promise<Answer<Operation<P, "get">>> {
    return this.call("GET", path, args[0]);
  }

  post<P extends PathsFor<"post">>(path: P, ...args: Args<Operation<P, "post">>): Promise<Answer<Operation<P, "post">>> {
    return this.call("POST", path, args[0]);
  }

  put<P extends PathsFor<"put">>(path: P, ...args: Args<Operation<P, "put">>): Promise<Answer<Operation<P, "put">>> {
    return this.call("PUT", path, args[0]);
  }

  patch<P extends PathsFor<"patch">>(path: P, ...args: Args<Operation<P, "patch">>): Promise<Answer<Operation<P, "patch">>> {
    return this.call("PATCH", path, args[0]);
  }

  delete<P extends PathsFor<"delete">>(path: P, ...args: Args<Operation<P, "delete">>): Promise<Answer<Operation<P, "delete">>> {
    return this.call("DELETE", path, args[0]);
  }

  /** One page of a list path. */
  page<P extends ListPaths>(path: P, ...args: Args<Operation<P, "get">>): Promise<Page<ItemOf<P>>> {
    const init = (args[0] || {}) as AnyInit;
    return this.client.page(fillPath(path, init.path), init.query as Query);
  }

  /** Every item of a list path, page after page. */
  iterate<P extends ListPaths>(path: P, ...args: Args<Operation<P, "get">>): AsyncIterableIterator<ItemOf<P>> {
    const init = (args[0] || {}) as AnyInit;
    return this.client.iterate(fillPath(path, init.path), init.query as Query);
  }

  private call<T>(method: string, path: string, init: unknown): Promise<T> {
    const i = (init || {}) as AnyInit;
    return this.client.request<T>(method, fillPath(path, i.path), {
      query: i.query as Query, body: i.body, headers: i.headers, signal: i.signal,
      idempotencyKey: i.idempotencyKey, ifMatch: i.ifMatch,
    });
  }
}
