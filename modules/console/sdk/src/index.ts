// The Trellis SDK: everything an app imports. No runtime dependencies and no
// Node-only API, so the same bundle runs in browsers and React Native.

export { Trellis } from "./client";
export type { ClientOptions, Me, RequestOptions } from "./client";
export { Live } from "./live";
export type { LiveError, LiveEvent, LiveState } from "./live";
export type { Page } from "./page";
export { NetworkError, Problem } from "./problem";
export type { FieldError } from "./problem";
export type { TokenPair } from "./session";
export { browserStorage, memoryStorage } from "./storage";
export type { KeyValueStorage } from "./storage";
export type { Timers } from "./timers";
export { Api, fillPath } from "./typed";
export type { Answer, CallInit, ItemOf, ListPaths, Method, Operation, PathsFor, Schema, components, paths } from "./typed";
