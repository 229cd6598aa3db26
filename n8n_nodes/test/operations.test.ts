import type { IBinaryData } from 'n8n-workflow';
import { Tunebridge } from '../nodes/Tunebridge/Tunebridge.node';
import { run } from './context';

const BASE = 'http://tunebridge.test:8000';

describe('Document: Extract', () => {
	const base = {
		resource: 'document',
		operation: 'extract',
		inputSource: 'text',
		text: (i: number) => `RECEIPT ${i}\nTOTAL 12.50`,
		schemaSource: 'preset',
		preset: 'receipt',
		adapter: '',
	};

	it('POSTs the text and preset to /v1/extract with the credential, one request per item', async () => {
		const { requests, output } = await run({
			params: base,
			items: [{ json: {} }, { json: {} }],
			response: { fields: { total: 12.5 }, valid_json: true },
		});
		expect(requests).toHaveLength(2);
		expect(requests[1]).toEqual({
			credentialType: 'tunebridgeApi',
			options: {
				method: 'POST',
				url: `${BASE}/v1/extract`,
				json: true,
				body: { text: 'RECEIPT 1\nTOTAL 12.50', schema: 'receipt' },
			},
		});
		expect(output[1]).toEqual({
			json: { fields: { total: 12.5 }, valid_json: true },
			pairedItem: { item: 1 },
		});
	});

	it('sends a field list, adapter and options', async () => {
		const { requests } = await run({
			params: {
				...base,
				schemaSource: 'fields',
				fieldNames: ' vendor, total ,, date',
				adapter: 'receipts@prod',
				options: { constrained: false, maxTokens: 64, model: 'qwen' },
			},
			response: {},
		});
		expect(requests[0].options.body).toEqual({
			text: 'RECEIPT 0\nTOTAL 12.50',
			schema: ['vendor', 'total', 'date'],
			adapter: 'receipts@prod',
			model: 'qwen',
			constrained: false,
			max_tokens: 64,
		});
	});

	it('reads the adapter from a version-2 resource locator', async () => {
		const { requests } = await run({
			params: { ...base, adapter: { __rl: true, mode: 'list', value: 'receipts@prod' } },
			response: {},
		});
		expect(requests[0].options.body).toMatchObject({ adapter: 'receipts@prod' });
		const empty = await run({
			params: { ...base, adapter: { __rl: true, mode: 'list', value: '' } },
			response: {},
		});
		expect(empty.requests[0].options.body).not.toHaveProperty('adapter');
	});

	it('sends candidate ranking only when chosen, and false to switch it off', async () => {
		const ranked = await run({
			params: { ...base, adapter: 'receipts', options: { rank: 'typed' } },
			response: {},
		});
		expect(ranked.requests[0].options.body).toMatchObject({ adapter: 'receipts', rank: 'typed' });
		const byDefault = await run({ params: { ...base, options: { rank: '' } }, response: {} });
		expect(byDefault.requests[0].options.body).not.toHaveProperty('rank');
		const off = await run({ params: { ...base, options: { rank: 'off' } }, response: {} });
		expect(off.requests[0].options.body).toMatchObject({ rank: false });
	});

	it('parses a JSON Schema typed as text, and omits the schema for the adapter', async () => {
		const schema = { type: 'object', properties: { total: { type: 'number' } } };
		const typed = await run({
			params: { ...base, schemaSource: 'jsonSchema', jsonSchema: JSON.stringify(schema) },
			response: {},
		});
		expect(typed.requests[0].options.body).toMatchObject({ schema });
		const adapter = await run({
			params: { ...base, schemaSource: 'adapter', adapter: 'receipts' },
			response: {},
		});
		expect(adapter.requests[0].options.body).toEqual({
			text: 'RECEIPT 0\nTOTAL 12.50',
			adapter: 'receipts',
		});
	});

	it('rejects a JSON Schema that does not parse, before any request', async () => {
		const { requests, output } = await run({
			params: { ...base, schemaSource: 'jsonSchema', jsonSchema: '{"type": ' },
			continueOnFail: true,
			response: {},
		});
		expect(requests).toHaveLength(0);
		expect(String(output[0].json.error)).toMatch(/^JSON Schema is not valid JSON/);
	});

	const txt: IBinaryData = {
		data: '',
		mimeType: 'text/plain',
		fileName: 'r.txt',
		fileExtension: 'txt',
	};

	it("reads a .txt binary property's text", async () => {
		const { requests } = await run({
			params: { ...base, inputSource: 'binary', binaryPropertyName: 'file' },
			binary: { file: { meta: txt, content: 'ACME\nTOTAL 3.00' } },
			response: {},
		});
		expect(requests[0].options.body).toEqual({ text: 'ACME\nTOTAL 3.00', schema: 'receipt' });
	});

	it('refuses a binary that is not text', async () => {
		const pdf: IBinaryData = {
			data: '',
			mimeType: 'application/pdf',
			fileName: 'r.pdf',
			fileExtension: 'pdf',
		};
		await expect(
			run({
				params: { ...base, inputSource: 'binary', binaryPropertyName: 'data' },
				binary: { data: { meta: pdf, content: '%PDF' } },
				response: {},
			}),
		).rejects.toThrow('Binary field "data" holds application/pdf (r.pdf), not a text file');
	});
});

describe('Dataset: Add Labelled Examples', () => {
	const items = [
		{ json: { text: 'A', fields: { total: 1 } } },
		{ json: { text: 'B', fields: { total: 2 } } },
		{ json: { text: 'C', fields: { total: 3 } } },
	];
	const params = {
		resource: 'dataset',
		operation: 'addExamples',
		dataset: 'my receipts',
		recordFormat: 'extraction',
		text: (i: number) => items[i].json.text,
		fields: (i: number) => items[i].json.fields,
	};

	it('sends all items as JSON lines in one request', async () => {
		const { requests, output } = await run({
			params,
			items,
			response: { dataset: 'my receipts', added: 3, total: 3, formats: { extraction: 3 } },
		});
		expect(requests).toHaveLength(1);
		expect(requests[0].options).toEqual({
			method: 'POST',
			url: `${BASE}/v1/datasets/my%20receipts/examples`,
			json: true,
			headers: { 'Content-Type': 'application/jsonl' },
			body: '{"text":"A","fields":{"total":1}}\n{"text":"B","fields":{"total":2}}\n{"text":"C","fields":{"total":3}}\n',
		});
		expect(output).toEqual([
			{
				json: { dataset: 'my receipts', added: 3, total: 3, formats: { extraction: 3 } },
				pairedItem: [{ item: 0 }, { item: 1 }, { item: 2 }],
			},
		]);
	});

	it('splits into batches, and sends whole items as they are', async () => {
		const chat = [
			{ json: { messages: [{ role: 'user', content: 'hi' }] } },
			{ json: { prompt: 'p', completion: 'c' } },
		];
		const { requests, output } = await run({
			params: { ...params, recordFormat: 'item', options: { batchSize: 1 } },
			items: chat,
			response: { added: 1 },
		});
		expect(requests.map((r) => r.options.body)).toEqual([
			'{"messages":[{"role":"user","content":"hi"}]}\n',
			'{"prompt":"p","completion":"c"}\n',
		]);
		expect(output.map((o) => o.pairedItem)).toEqual([[{ item: 0 }], [{ item: 1 }]]);
	});

	it('reports a bad item and sends the rest with continueOnFail', async () => {
		const { requests, output } = await run({
			params: { ...params, fields: (i: number) => (i === 1 ? '{}' : items[i].json.fields) },
			items,
			continueOnFail: true,
			response: { added: 2 },
		});
		expect(requests[0].options.body).toBe(
			'{"text":"A","fields":{"total":1}}\n{"text":"C","fields":{"total":3}}\n',
		);
		expect(output).toEqual([
			{ json: { error: 'Fields must be a non-empty JSON object' }, pairedItem: { item: 1 } },
			{ json: { added: 2 }, pairedItem: [{ item: 0 }, { item: 2 }] },
		]);
	});
});

describe('Training', () => {
	it('Start Job sends kind, dataset, hyperparameters, adapter name, callback and promote', async () => {
		const { requests } = await run({
			params: {
				resource: 'training',
				operation: 'startJob',
				kind: 'train',
				dataset: 'receipts',
				adapterName: 'receipts-v2',
				hyperparameters: '{"epochs": 3}',
				options: {
					callbackUrl: 'http://n8n/webhook-waiting/1',
					promote: '{"alias": "prod", "dataset": "receipts-eval"}',
				},
			},
			response: { id: 'j1', status: 'queued' },
		});
		expect(requests[0].options).toEqual({
			method: 'POST',
			url: `${BASE}/v1/jobs`,
			json: true,
			body: {
				kind: 'train',
				dataset: 'receipts',
				hyperparameters: { epochs: 3 },
				adapter_name: 'receipts-v2',
				callback_url: 'http://n8n/webhook-waiting/1',
				promote: { alias: 'prod', dataset: 'receipts-eval' },
			},
		});
	});

	it('Start Job (eval) sends no adapter name', async () => {
		const { requests } = await run({
			params: {
				resource: 'training',
				operation: 'startJob',
				kind: 'eval',
				dataset: 'receipts',
				adapterName: 'ignored',
				hyperparameters: { adapters: ['receipts@2'] },
			},
			response: {},
		});
		expect(requests[0].options.body).toEqual({
			kind: 'eval',
			dataset: 'receipts',
			hyperparameters: { adapters: ['receipts@2'] },
		});
	});

	it('Get Job and Get Events GET the job by its encoded id', async () => {
		const job = await run({
			params: { resource: 'training', operation: 'getJob', jobId: 'a/b' },
			response: { id: 'a/b' },
		});
		expect(job.requests[0].options).toEqual({
			method: 'GET',
			url: `${BASE}/v1/jobs/a%2Fb`,
			json: true,
		});
		const events = await run({
			params: { resource: 'training', operation: 'getEvents', jobId: 'j1', after: 4 },
			response: [{ seq: 5 }, { seq: 6 }],
		});
		expect(events.requests[0].options).toEqual({
			method: 'GET',
			url: `${BASE}/v1/jobs/j1/events`,
			json: true,
			qs: { after: 4 },
		});
		expect(events.output).toEqual([
			{ json: { seq: 5 }, pairedItem: { item: 0 } },
			{ json: { seq: 6 }, pairedItem: { item: 0 } },
		]);
	});
});

describe('Adapter', () => {
	it('Get Many with Return All returns one item per adapter', async () => {
		const { requests, output } = await run({
			params: { resource: 'adapter', operation: 'list', returnAll: true },
			response: [{ name: 'a' }, { name: 'b' }],
		});
		expect(requests[0].options).toEqual({ method: 'GET', url: `${BASE}/v1/adapters`, json: true });
		expect(output.map((o) => o.json.name)).toEqual(['a', 'b']);
	});

	it('Get Many without Return All returns the first Limit adapters', async () => {
		const { output } = await run({
			params: { resource: 'adapter', operation: 'list', returnAll: false, limit: 2 },
			response: [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
		});
		expect(output.map((o) => o.json.name)).toEqual(['a', 'b']);
	});

	it('Get encodes the reference', async () => {
		const { requests } = await run({
			params: { resource: 'adapter', operation: 'get', ref: 'receipts@prod' },
			response: {},
		});
		expect(requests[0].options.url).toBe(`${BASE}/v1/adapters/receipts%40prod`);
	});

	it('Promote PUTs the version and reason to the alias', async () => {
		const { requests } = await run({
			params: {
				resource: 'adapter',
				operation: 'promote',
				name: 'receipts',
				alias: 'prod',
				version: 3,
				reason: 'eval +4 points',
			},
			response: { alias: 'prod', version: 3 },
		});
		expect(requests[0].options).toEqual({
			method: 'PUT',
			url: `${BASE}/v1/adapters/receipts/aliases/prod`,
			json: true,
			body: { version: 3, reason: 'eval +4 points' },
		});
	});

	it('Promote refuses a version below 1 without a request', async () => {
		const { requests, output } = await run({
			params: {
				resource: 'adapter',
				operation: 'promote',
				name: 'r',
				alias: 'prod',
				version: 0,
				reason: '',
			},
			continueOnFail: true,
			response: {},
		});
		expect(requests).toHaveLength(0);
		expect(output[0].json).toEqual({ error: 'Version must be a whole number from 1' });
	});

	it('Roll Back POSTs to the rollback route', async () => {
		const { requests } = await run({
			params: { resource: 'adapter', operation: 'rollback', name: 'receipts', alias: 'prod' },
			response: {},
		});
		expect(requests[0].options).toEqual({
			method: 'POST',
			url: `${BASE}/v1/adapters/receipts/aliases/prod/rollback`,
			json: true,
		});
	});
});

describe('Chat: Complete', () => {
	it('sends messages, a json_schema response format and options', async () => {
		const schema = { type: 'object', properties: { answer: { type: 'string' } } };
		const { requests } = await run({
			params: {
				resource: 'chat',
				operation: 'complete',
				model: 'receipts@prod',
				messages: {
					values: [
						{ role: 'system', content: 'Be brief.' },
						{ role: 'user', content: 'Total?' },
					],
				},
				responseFormat: 'jsonSchema',
				jsonSchema: schema,
				options: { maxTokens: 32, temperature: 0 },
			},
			response: { choices: [] },
		});
		expect(requests[0].options).toEqual({
			method: 'POST',
			url: `${BASE}/v1/chat/completions`,
			json: true,
			body: {
				model: 'receipts@prod',
				messages: [
					{ role: 'system', content: 'Be brief.' },
					{ role: 'user', content: 'Total?' },
				],
				response_format: { type: 'json_schema', json_schema: { name: 'answer', schema } },
				max_tokens: 32,
				temperature: 0,
			},
		});
	});
});

describe('node description', () => {
	const description = new Tunebridge().description;

	it('declares the credential and every resource with an operation', () => {
		expect(description.credentials).toEqual([{ name: 'tunebridgeApi', required: true }]);
		const resources = description.properties.find((p) => p.name === 'resource')?.options ?? [];
		expect(resources.map((o) => ('value' in o ? o.value : ''))).toEqual([
			'adapter',
			'chat',
			'dataset',
			'document',
			'evaluation',
			'training',
		]);
	});

	it('runs no request for an unknown operation', async () => {
		await expect(run({ params: { resource: 'document', operation: 'nope' } })).rejects.toThrow(
			'Unsupported operation "nope" on "document"',
		);
	});
});
