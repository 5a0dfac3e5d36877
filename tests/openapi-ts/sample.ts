// A client of the generated types (generated/api.d.ts, written by
// openapi-typescript from the served /v1/openapi.json): it must type-check,
// and each @ts-expect-error line must really be an error, so a document that
// loses its schemas fails the test instead of passing vacuously.
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./generated/api";

type Lead = components["schemas"]["Lead"];
type LeadCreate = operations["createLead"]["requestBody"]["content"]["application/json"];
type LeadList = components["schemas"]["LeadList"];
type Problem = components["schemas"]["Problem"];

const client = createClient<paths>({ baseUrl: "http://localhost:8080" });

export async function createLead(token: string, body: LeadCreate): Promise<Lead> {
	const { data, error } = await client.POST("/v1/crm/leads", {
		body,
		headers: { Authorization: `Bearer ${token}`, "Idempotency-Key": "lead-1" },
	});
	if (error) {
		const problem: Problem = error;
		throw new Error(`${problem.status} ${problem.title}: ${problem.detail ?? ""}`);
	}
	return data;
}

export async function leadsOf(token: string, owner: string): Promise<LeadList> {
	const { data, error } = await client.GET("/v1/crm/leads", {
		params: { query: { owner_id: owner, status: "new", sort: "-created_at", limit: 20 } },
		headers: { Authorization: `Bearer ${token}` },
	});
	if (error) throw new Error(error.title);
	return data;
}

export function describe(lead: Lead): string {
	const id: string = lead.id;
	const version: number = lead.version;
	const created: string = lead.created_at;
	const status: "new" | "contacted" | "qualified" | "converted" | "lost" | undefined =
		lead.status;
	const email: string | null | undefined = lead.email;
	return `${id} v${version} ${created} ${lead.name ?? ""} ${status ?? ""} ${email ?? ""}`;
}

export const ok: LeadCreate = {
	name: "Ada Lovelace",
	email: "ada@example.com",
	phone: null,
	source: { channel: "web" },
	status: "new",
};

// @ts-expect-error name is required on create
export const noName: LeadCreate = { email: "ada@example.com" };
// @ts-expect-error the server refuses members it does not know
export const unknownMember: LeadCreate = { name: "Ada", nickname: "A" };
// @ts-expect-error status is one of the lead states
export const badStatus: LeadCreate = { name: "Ada", status: "hot" };
// @ts-expect-error duplicate_of is set by the server only
export const serverField: LeadCreate = { name: "Ada", duplicate_of: "0123456789abcdef01234567" };

export async function badQuery(token: string) {
	await client.GET("/v1/crm/leads", {
		// @ts-expect-error sort takes the lead's sorts only
		params: { query: { sort: "email" } },
		headers: { Authorization: `Bearer ${token}` },
	});
}

export function readMoney(deal: components["schemas"]["Deal"]): number | undefined {
	return deal.amount?.amount;
}
