import type { IHttpRequestOptions, ILoadOptionsFunctions } from 'n8n-workflow';
import { searchAdapters, searchDatasets } from '../nodes/Tunebridge/methods';
import { Tunebridge } from '../nodes/Tunebridge/Tunebridge.node';
import { node } from './context';

const ADAPTERS = [
	{
		name: 'receipts',
		latest: 3,
		aliases: { prod: 2 },
		versions: [
			{ version: 3, base_model: 'smollm2-135m' },
			{ version: 2, base_model: 'smollm2-135m' },
		],
	},
	{ name: 'invoices', latest: 1, aliases: {}, versions: [{ version: 1 }] },
];
const DATASETS = [
	{ name: 'receipts', examples: 120 },
	{ name: 'corrections-receipt', examples: 4 },
];

function loadContext(response: unknown) {
	const requests: IHttpRequestOptions[] = [];
	const context = {
		getNode: () => ({ ...node, typeVersion: 2 }),
		getCredentials: async () => ({ baseUrl: 'http://tunebridge.test:8000/', apiKey: 'key' }),
		helpers: {
			httpRequestWithAuthentication: vi.fn(async (_type: string, options: IHttpRequestOptions) => {
				requests.push(options);
				if (response instanceof Error) throw response;
				return response;
			}),
		},
	} as unknown as ILoadOptionsFunctions;
	return { context, requests };
}

describe('resource locator lists (node version 2)', () => {
	it('are the node’s listSearch methods', () => {
		expect(Object.keys(new Tunebridge().methods.listSearch)).toEqual([
			'searchAdapters',
			'searchDatasets',
		]);
	});

	it('lists every adapter reference: name, name@alias, name@version', async () => {
		const { context, requests } = loadContext(ADAPTERS);
		const { results } = await searchAdapters.call(context);
		expect(requests).toEqual([
			{ method: 'GET', url: 'http://tunebridge.test:8000/v1/adapters', json: true },
		]);
		expect(results.map(({ value }) => value)).toEqual([
			'receipts',
			'receipts@prod',
			'receipts@3',
			'receipts@2',
			'invoices',
			'invoices@1',
		]);
		expect(results[0].name).toBe('receipts (latest: v3)');
		expect(results[1].name).toBe('receipts@prod (v2)');
		expect(results[2].name).toBe('receipts@3 on smollm2-135m');
	});

	it('filters by what was typed, case-insensitively', async () => {
		const { context } = loadContext(ADAPTERS);
		const { results } = await searchAdapters.call(context, 'PROD');
		expect(results.map(({ value }) => value)).toEqual(['receipts@prod']);
	});

	it('lists datasets with their example counts', async () => {
		const { context, requests } = loadContext(DATASETS);
		const { results } = await searchDatasets.call(context, 'correct');
		expect(requests[0].url).toBe('http://tunebridge.test:8000/v1/datasets');
		expect(results).toEqual([
			{ name: 'corrections-receipt (4 examples)', value: 'corrections-receipt' },
		]);
	});

	it('says what the service answered when it refuses', async () => {
		const refused = Object.assign(new Error('Request failed with status code 401'), {
			response: { status: 401, data: { error: 'invalid API key' } },
		});
		const { context } = loadContext(refused);
		await expect(searchDatasets.call(context)).rejects.toThrow('invalid API key');
	});
});
