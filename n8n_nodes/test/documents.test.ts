import type { IBinaryData, IHttpRequestOptions } from 'n8n-workflow';
import { NodeApiError } from 'n8n-workflow';
import { Tunebridge } from '../nodes/Tunebridge/Tunebridge.node';
import { multipartBody } from '../nodes/Tunebridge/resources/document/process';
import { run } from './context';
import { n8nHttpError } from './errors';

const BASE = 'http://tunebridge.test:8000';

const record = {
	id: '3f9a0c2b7d41e856',
	doc_type: 'receipt',
	fields: { total: 12.5 },
	decision: 'review',
	status: 'pending_review',
};

/** The parts of a multipart body: name → {filename?, contentType?, value}. */
function parseMultipart(options: IHttpRequestOptions) {
	const contentType = String((options.headers as Record<string, string>)['Content-Type']);
	const boundary = /^multipart\/form-data; boundary=(.+)$/.exec(contentType)?.[1];
	expect(boundary).toBeTruthy();
	const text = (options.body as Buffer).toString('latin1');
	expect(text.endsWith(`\r\n--${boundary}--\r\n`)).toBe(true);
	const parts: Record<string, { filename?: string; contentType?: string; value: string }> = {};
	for (const chunk of text.split(`--${boundary}`).slice(1, -1)) {
		const [head, ...rest] = chunk.replace(/^\r\n/, '').split('\r\n\r\n');
		const value = rest.join('\r\n\r\n').replace(/\r\n$/, '');
		const name = /name="([^"]*)"/.exec(head)?.[1] ?? '';
		parts[name] = {
			filename: /filename="([^"]*)"/.exec(head)?.[1],
			contentType: /Content-Type: (.+)/.exec(head)?.[1],
			value,
		};
	}
	return parts;
}

describe('Document: Process', () => {
	const base = {
		resource: 'document',
		operation: 'process',
		inputSource: 'binary',
		binaryPropertyName: 'file',
	};
	const pdf: IBinaryData = {
		data: '',
		mimeType: 'application/pdf',
		fileName: 'receipt 1.pdf',
		fileExtension: 'pdf',
	};

	it('POSTs the file as multipart with its file name and MIME type, and the options as fields', async () => {
		const { requests, output } = await run({
			params: {
				...base,
				options: {
					documentType: 'receipt',
					adapter: ' receipts@prod ',
					model: '',
					correctionsDataset: 'corrections',
				},
			},
			binary: { file: { meta: pdf, content: '%PDF-1.4 body' } },
			response: record,
		});
		expect(requests).toHaveLength(1);
		const { credentialType, options } = requests[0];
		expect(credentialType).toBe('tunebridgeApi');
		expect(options.method).toBe('POST');
		expect(options.url).toBe(`${BASE}/v1/documents`);
		expect(options.json).toBe(true);
		expect(Buffer.isBuffer(options.body)).toBe(true);
		expect(parseMultipart(options)).toEqual({
			type: { value: 'receipt' },
			adapter: { value: 'receipts@prod' },
			corrections_dataset: { value: 'corrections' },
			file: { filename: 'receipt 1.pdf', contentType: 'application/pdf', value: '%PDF-1.4 body' },
		});
		expect(output).toEqual([{ json: record, pairedItem: { item: 0 } }]);
	});

	it('accepts images, text and Markdown, naming a file that has no name from its MIME type', async () => {
		const cases: Array<[IBinaryData, string]> = [
			[{ data: '', mimeType: 'image/png', fileName: 'scan.PNG' }, 'scan.PNG'],
			[{ data: '', mimeType: 'image/jpeg', fileName: 'photo.jpg' }, 'photo.jpg'],
			[{ data: '', mimeType: 'image/tiff', fileName: 'fax.tif' }, 'fax.tif'],
			[{ data: '', mimeType: 'text/markdown', fileName: 'note.md' }, 'note.md'],
			[{ data: '', mimeType: 'text/plain; charset=utf-8' }, 'document.txt'],
			[{ data: '', mimeType: 'image/jpeg', fileName: 'upload' }, 'upload.jpg'],
		];
		for (const [meta, name] of cases) {
			const { requests } = await run({
				params: base,
				binary: { file: { meta, content: 'x' } },
				response: record,
			});
			const file = parseMultipart(requests[0].options).file;
			expect(file.filename).toBe(name);
			expect(file.contentType).toBe(meta.mimeType.split(';')[0]);
		}
	});

	it('refuses a file the service does not read, before any request', async () => {
		const docx: IBinaryData = {
			data: '',
			mimeType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
			fileName: 'letter.docx',
		};
		const { requests, output } = await run({
			params: base,
			binary: { file: { meta: docx, content: 'PK' } },
			continueOnFail: true,
			response: record,
		});
		expect(requests).toHaveLength(0);
		expect(String(output[0].json.error)).toMatch(
			/^Binary field "file" holds application\/vnd.* \(letter\.docx\), which the service does not read$/,
		);
	});

	it('sends text as JSON with the file name and options', async () => {
		const { requests } = await run({
			params: {
				...base,
				inputSource: 'text',
				text: (i: number) => `RECEIPT ${i}\nTOTAL 12.50`,
				options: { documentType: '', model: 'qwen', fileName: 'mail.md' },
			},
			items: [{ json: {} }, { json: {} }],
			response: record,
		});
		expect(requests[1].options).toEqual({
			method: 'POST',
			url: `${BASE}/v1/documents`,
			json: true,
			body: { text: 'RECEIPT 1\nTOTAL 12.50', model: 'qwen', filename: 'mail.md' },
		});
	});

	it('refuses empty text', async () => {
		await expect(
			run({ params: { ...base, inputSource: 'text', text: '  ' }, response: record }),
		).rejects.toThrow('The document text is empty');
	});

	it("maps the service's 422 to a NodeApiError, or an error item with continueOnFail", async () => {
		const answer = () => {
			throw n8nHttpError(422, { error: "file 'a.pdf': no text layer and OCR is not installed" });
		};
		const params = { ...base, inputSource: 'text', text: 'x' };
		const failed = run({ params, response: answer });
		await expect(failed).rejects.toBeInstanceOf(NodeApiError);
		await expect(run({ params, response: answer })).rejects.toMatchObject({
			message: "file 'a.pdf': no text layer and OCR is not installed",
			httpCode: '422',
		});
		const { output } = await run({ params, response: answer, continueOnFail: true });
		expect(output).toEqual([
			{
				json: { error: "file 'a.pdf': no text layer and OCR is not installed" },
				pairedItem: { item: 0 },
			},
		]);
	});

	it('multipartBody escapes quotes and line breaks in names and keeps the bytes', () => {
		const bytes = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x89]);
		const body = multipartBody(
			'B',
			{ type: 'kyc' },
			{
				name: 'a"b\r\n.png',
				mimeType: 'image/png',
				content: bytes,
			},
		);
		const head =
			'--B\r\nContent-Disposition: form-data; name="type"\r\n\r\nkyc\r\n' +
			'--B\r\nContent-Disposition: form-data; name="file"; filename="a%22b%0D%0A.png"\r\n' +
			'Content-Type: image/png\r\n\r\n';
		expect(body.subarray(0, head.length).toString('utf8')).toBe(head);
		expect(body.subarray(head.length, head.length + 5)).toEqual(bytes);
		expect(body.subarray(head.length + 5).toString('utf8')).toBe('\r\n--B--\r\n');
	});
});

describe('Document: Review', () => {
	const base = {
		resource: 'document',
		operation: 'review',
		documentId: (i: number) => (i === 0 ? '3f9a0c2b7d41e856' : 'a/b'),
		corrections: '{"total": "18.40", "line_items[1].amount": 3}',
		decision: 'approve',
		note: ' total misread ',
		reviewer: 'ana',
		options: { correctionsDataset: 'corrections' },
	};

	it('POSTs the corrections, decision, note and reviewer to the encoded id', async () => {
		const { requests, output } = await run({
			params: base,
			items: [{ json: {} }, { json: {} }],
			response: { ...record, status: 'reviewed', decision: 'approve' },
		});
		expect(requests[0].options).toEqual({
			method: 'POST',
			url: `${BASE}/v1/documents/3f9a0c2b7d41e856/review`,
			json: true,
			body: {
				fields: { total: '18.40', 'line_items[1].amount': 3 },
				decision: 'approve',
				note: 'total misread',
				reviewer: 'ana',
				corrections_dataset: 'corrections',
			},
		});
		expect(requests[1].options.url).toBe(`${BASE}/v1/documents/a%2Fb/review`);
		expect(output[1]).toMatchObject({ json: { status: 'reviewed' }, pairedItem: { item: 1 } });
	});

	it('takes corrections from an expression object, and leaves out an empty decision', async () => {
		const { requests } = await run({
			params: {
				...base,
				corrections: { vendor: 'ACME' },
				decision: '',
				note: '',
				reviewer: '',
				options: {},
			},
			response: {},
		});
		expect(requests[0].options.body).toEqual({ fields: { vendor: 'ACME' } });
	});

	it('refuses corrections that are not a JSON object, and an empty id, before any request', async () => {
		const { requests, output } = await run({
			params: {
				...base,
				documentId: (i: number) => (i === 0 ? 'x' : ' '),
				corrections: (i: number) => (i === 0 ? '["total"]' : '{}'),
			},
			items: [{ json: {} }, { json: {} }],
			continueOnFail: true,
			response: {},
		});
		expect(requests).toHaveLength(0);
		expect(output.map((o) => o.json.error)).toEqual([
			'Corrections must be a JSON object',
			'Document ID is empty',
		]);
	});

	it('maps 409 (not waiting for review) to a NodeApiError', async () => {
		await expect(
			run({
				params: base,
				response: () => {
					throw n8nHttpError(409, { error: 'document 3f9a0c2b7d41e856 is not waiting for review' });
				},
			}),
		).rejects.toMatchObject({
			message: 'document 3f9a0c2b7d41e856 is not waiting for review',
			httpCode: '409',
			context: { itemIndex: 0 },
		});
	});
});

describe('Document: Get', () => {
	it('GETs the document by its encoded id', async () => {
		const { requests, output } = await run({
			params: { resource: 'document', operation: 'get', documentId: ' 3f9a 0c ' },
			response: record,
		});
		expect(requests[0]).toEqual({
			credentialType: 'tunebridgeApi',
			options: { method: 'GET', url: `${BASE}/v1/documents/3f9a%200c`, json: true },
		});
		expect(output).toEqual([{ json: record, pairedItem: { item: 0 } }]);
	});

	it('maps 404 to a NodeApiError, or an error item with continueOnFail', async () => {
		const params = { resource: 'document', operation: 'get', documentId: 'nope' };
		const response = () => {
			throw n8nHttpError(404, { error: 'document nope not found' });
		};
		await expect(run({ params, response })).rejects.toMatchObject({
			message: 'document nope not found',
			httpCode: '404',
		});
		const { output } = await run({ params, response, continueOnFail: true });
		expect(output).toEqual([
			{ json: { error: 'document nope not found' }, pairedItem: { item: 0 } },
		]);
	});
});

describe('Document: List Held for Review', () => {
	const held = [
		{ thread_id: 'b2', score: 0.61, reasons: ['new sender: nearest training head 8% alike'] },
		{ thread_id: 'a1', score: 0.42, reasons: ['low confidence: total 0.31 (calibrated)'] },
		{ thread_id: 'c3', score: 0.1, reasons: [] },
	];
	const base = { resource: 'document', operation: 'listHeld' };

	it('asks for the most informative first by default, one item per document, up to Limit', async () => {
		const { requests, output } = await run({
			params: { ...base, orderBy: 'value', returnAll: false, limit: 2 },
			response: held,
		});
		expect(requests[0]).toEqual({
			credentialType: 'tunebridgeApi',
			options: {
				method: 'GET',
				url: `${BASE}/v1/documents`,
				json: true,
				qs: { status: 'pending_review', order: 'value' },
			},
		});
		expect(output).toEqual([
			{ json: held[0], pairedItem: { item: 0 } },
			{ json: held[1], pairedItem: { item: 0 } },
		]);
	});

	it('lists oldest first without an order, and all of them with Return All', async () => {
		const { requests, output } = await run({
			params: { ...base, orderBy: '', returnAll: true },
			response: held,
		});
		expect(requests[0].options.qs).toEqual({ status: 'pending_review' });
		expect(output.map(({ json }) => json.thread_id)).toEqual(['b2', 'a1', 'c3']);
	});

	it('offers Most Informative First as the default order', () => {
		const orderBy = new Tunebridge().description.properties.find(
			(p) => p.name === 'orderBy' && p.displayOptions?.show?.operation?.includes('listHeld'),
		);
		expect(orderBy?.default).toBe('value');
		expect(orderBy?.options?.map((o) => ('name' in o ? o.name : ''))).toEqual([
			'Most Informative First',
			'Oldest First',
		]);
	});
});
