import type {
	ILoadOptionsFunctions,
	INodeListSearchItems,
	INodeListSearchResult,
} from 'n8n-workflow';
import { buildRequestOptions, CREDENTIAL_TYPE, toNodeApiError } from './transport';

/**
 * The lists behind the version-2 resource locators (`Adapter`, `Dataset Name`): read from the service
 * with the node's credential, filtered by what the user typed (case-insensitive, anywhere in the name).
 */

async function getJson(this: ILoadOptionsFunctions, path: string): Promise<unknown> {
	const credentials = await this.getCredentials<{ baseUrl?: string }>(CREDENTIAL_TYPE);
	const options = buildRequestOptions(credentials.baseUrl || 'http://127.0.0.1:8000', {
		method: 'GET',
		path,
	});
	try {
		return await this.helpers.httpRequestWithAuthentication.call(this, CREDENTIAL_TYPE, options);
	} catch (error) {
		throw toNodeApiError(this.getNode(), error);
	}
}

function matching(results: INodeListSearchItems[], filter?: string): INodeListSearchResult {
	const wanted = (filter ?? '').trim().toLowerCase();
	return {
		results: wanted ? results.filter((r) => r.name.toLowerCase().includes(wanted)) : results,
	};
}

interface AdapterEntry {
	name: string;
	latest?: number;
	aliases?: Record<string, number>;
	versions?: Array<{ version?: number; base_model?: string }>;
}

/** Every adapter reference: `name` (its latest version), then `name@alias` and `name@version`. */
export async function searchAdapters(
	this: ILoadOptionsFunctions,
	filter?: string,
): Promise<INodeListSearchResult> {
	const entries = ((await getJson.call(this, '/v1/adapters')) ?? []) as AdapterEntry[];
	const results: INodeListSearchItems[] = [];
	for (const entry of entries) {
		results.push({ name: `${entry.name} (latest: v${entry.latest ?? '?'})`, value: entry.name });
		for (const [alias, version] of Object.entries(entry.aliases ?? {})) {
			results.push({
				name: `${entry.name}@${alias} (v${version})`,
				value: `${entry.name}@${alias}`,
			});
		}
		for (const { version, base_model: base } of entry.versions ?? []) {
			if (version === undefined) continue;
			const on = base ? ` on ${base}` : '';
			results.push({ name: `${entry.name}@${version}${on}`, value: `${entry.name}@${version}` });
		}
	}
	return matching(results, filter);
}

/** Every dataset, with its number of examples. */
export async function searchDatasets(
	this: ILoadOptionsFunctions,
	filter?: string,
): Promise<INodeListSearchResult> {
	const entries = ((await getJson.call(this, '/v1/datasets')) ?? []) as Array<{
		name: string;
		examples?: number;
	}>;
	return matching(
		entries.map(({ name, examples }) => ({
			name: examples === undefined ? name : `${name} (${examples} examples)`,
			value: name,
		})),
		filter,
	);
}
