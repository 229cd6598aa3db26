import type { JsonObject } from 'n8n-workflow';
import { NodeApiError } from 'n8n-workflow';
import {
	buildRequestOptions,
	describeBackendError,
	findErrorResponse,
	toNodeApiError,
} from '../nodes/Tunebridge/transport';
import { node, run } from './context';

/** What axios throws for an HTTP error status. */
function axiosError(status: number, data: unknown) {
	return Object.assign(new Error(`Request failed with status code ${status}`), {
		isAxiosError: true,
		response: { status, statusText: 'error', headers: {}, data },
	});
}

describe('buildRequestOptions', () => {
	it('joins the base URL and path without doubled slashes and asks for JSON', () => {
		expect(
			buildRequestOptions('http://h:8000//', { method: 'GET', path: '/v1/models', qs: { a: 1 } }),
		).toEqual({ method: 'GET', url: 'http://h:8000/v1/models', json: true, qs: { a: 1 } });
	});

	it('leaves out what the request does not set', () => {
		const options = buildRequestOptions('http://h', { method: 'POST', path: '/v1/x' });
		expect(Object.keys(options).sort()).toEqual(['json', 'method', 'url']);
	});
});

describe('describeBackendError', () => {
	it('reads {"error": ...}', () => {
		expect(describeBackendError({ error: 'unknown adapter receipts' })).toEqual({
			message: 'unknown adapter receipts',
			description: undefined,
		});
	});

	it('lists validation details', () => {
		const body = {
			error: 'invalid request',
			details: [
				{ where: 'body.text', problem: 'Field required' },
				{ where: 'body.max_tokens', problem: 'Input should be greater than or equal to 1' },
			],
		};
		expect(describeBackendError(body)).toEqual({
			message: 'invalid request',
			description:
				'body.text: Field required\nbody.max_tokens: Input should be greater than or equal to 1',
		});
	});

	it("lists a dataset's line issues", () => {
		const body = {
			error: '1 invalid line',
			issues: [
				{ file: 'request body', line: 2, problem: "field 'fields' must be a non-empty object" },
			],
		};
		expect(describeBackendError(body).description).toBe(
			"request body:2: field 'fields' must be a non-empty object",
		);
	});

	it("reads the OpenAI-compatible routes' error object", () => {
		const body = {
			error: {
				message: 'max_tokens: got 3, raise it',
				type: 'invalid_request_error',
				param: 'max_tokens',
				code: null,
			},
		};
		expect(describeBackendError(body)).toEqual({
			message: 'max_tokens: got 3, raise it',
			description: 'parameter: max_tokens',
		});
	});

	it('ignores bodies that are not the backend shape', () => {
		expect(describeBackendError('<html>')).toEqual({});
		expect(describeBackendError({ detail: 'x' })).toEqual({});
	});
});

describe('toNodeApiError', () => {
	it('maps an axios error to the backend message and status', () => {
		const error = toNodeApiError(node, axiosError(404, { error: 'job abc not found' }), 3);
		expect(error).toBeInstanceOf(NodeApiError);
		expect(error.message).toBe('job abc not found');
		expect(error.httpCode).toBe('404');
		expect(error.context.itemIndex).toBe(3);
	});

	it('maps the NodeApiError that httpRequestWithAuthentication throws', () => {
		const wrapped = new NodeApiError(
			node,
			axiosError(422, {
				error: 'invalid request',
				details: [{ where: 'body.version', problem: 'Input should be greater than or equal to 1' }],
			}) as unknown as JsonObject,
		);
		expect(findErrorResponse(wrapped).status).toBe(422);
		const error = toNodeApiError(node, wrapped, 0);
		expect(error.message).toBe('invalid request');
		expect(error.description).toBe('body.version: Input should be greater than or equal to 1');
		expect(error.httpCode).toBe('422');
	});

	it('parses a body that came back as text', () => {
		const error = toNodeApiError(node, axiosError(401, '{"error": "missing or invalid API key"}'));
		expect(error.message).toBe('missing or invalid API key');
		expect(error.httpCode).toBe('401');
	});

	it("keeps n8n's own error when there is no backend body (e.g. connection refused)", () => {
		const refused = new NodeApiError(node, {
			message: 'connect ECONNREFUSED 127.0.0.1:8000',
			code: 'ECONNREFUSED',
		} as JsonObject);
		const error = toNodeApiError(node, refused, 1);
		expect(error).toBe(refused);
		expect(error.context.itemIndex).toBe(1);
	});
});

describe('errors from a node run', () => {
	const params = { resource: 'training', operation: 'getJob', jobId: 'nope' };

	it('throws a NodeApiError with the backend message', async () => {
		await expect(
			run({
				params,
				response: () => {
					// what n8n's httpRequestWithAuthentication throws for a 404
					throw new NodeApiError(
						node,
						axiosError(404, { error: 'job nope not found' }) as unknown as JsonObject,
					);
				},
			}),
		).rejects.toMatchObject({ message: 'job nope not found', httpCode: '404' });
	});

	it('emits {json: {error}, pairedItem} per failed item with continueOnFail', async () => {
		const { output, items } = await run({
			params: { ...params, jobId: (i: number) => (i === 0 ? 'nope' : 'ok') },
			items: [{ json: { a: 1 } }, { json: { a: 2 } }],
			continueOnFail: true,
			response: (options: { url: string }) => {
				if (options.url.endsWith('/nope')) throw axiosError(404, { error: 'job nope not found' });
				return { id: 'ok', status: 'running' };
			},
		});
		expect(output).toEqual([
			{ json: { error: 'job nope not found' }, pairedItem: { item: 0 } },
			{ json: { id: 'ok', status: 'running' }, pairedItem: { item: 1 } },
		]);
		expect(items).toEqual([{ json: { a: 1 } }, { json: { a: 2 } }]);
	});
});
