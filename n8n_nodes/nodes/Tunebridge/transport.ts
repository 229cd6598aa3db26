import type {
	IDataObject,
	IExecuteFunctions,
	IHttpRequestMethods,
	IHttpRequestOptions,
	INode,
	JsonObject,
} from 'n8n-workflow';
import { NodeApiError } from 'n8n-workflow';

export const CREDENTIAL_TYPE = 'tunebridgeApi';

export interface TunebridgeRequest {
	method: IHttpRequestMethods;
	/** Path below the base URL, starting with `/v1/...`; callers encode path parameters. */
	path: string;
	body?: IDataObject | string | Buffer;
	qs?: IDataObject;
	headers?: IDataObject;
	/** `text`: return the response body as a string (e.g. a Markdown report), never parsed. */
	encoding?: 'text';
}

/** The request options sent for `request`, with `baseUrl` from the credential. */
export function buildRequestOptions(
	baseUrl: string,
	request: TunebridgeRequest,
): IHttpRequestOptions {
	const options: IHttpRequestOptions = {
		method: request.method,
		url: `${baseUrl.replace(/\/+$/, '')}${request.path}`,
		json: true,
	};
	if (request.qs !== undefined) options.qs = request.qs;
	if (request.headers !== undefined) options.headers = request.headers;
	if (request.body !== undefined) options.body = request.body;
	if (request.encoding !== undefined) {
		options.json = false;
		options.encoding = request.encoding;
	}
	return options;
}

/** Calls the tunebridge API with the node's credential; API errors become NodeApiError. */
export async function tunebridgeRequest(
	this: IExecuteFunctions,
	request: TunebridgeRequest,
	itemIndex = 0,
): Promise<unknown> {
	const credentials = await this.getCredentials<{ baseUrl?: string }>(CREDENTIAL_TYPE, itemIndex);
	const options = buildRequestOptions(credentials.baseUrl || 'http://127.0.0.1:8000', request);
	try {
		return await this.helpers.httpRequestWithAuthentication.call(this, CREDENTIAL_TYPE, options);
	} catch (error) {
		throw toNodeApiError(this.getNode(), error, itemIndex);
	}
}

interface ErrorResponse {
	status?: number;
	body?: unknown;
}

function asObject(value: unknown): Record<string, unknown> | undefined {
	return value !== null && typeof value === 'object'
		? (value as Record<string, unknown>)
		: undefined;
}

/**
 * Finds the HTTP status and response body in an axios error, or in the NodeApiError that
 * `httpRequestWithAuthentication` wraps it in (which keeps the body as `context.data`).
 */
export function findErrorResponse(error: unknown): ErrorResponse {
	const found: ErrorResponse = {};
	const seen = new Set<unknown>();
	let current = asObject(error);
	while (current && !seen.has(current)) {
		seen.add(current);
		const response = asObject(current.response);
		if (response) {
			found.status ??= Number(response.status ?? response.statusCode) || undefined;
			found.body ??= response.data ?? response.body;
		}
		found.body ??= asObject(current.error); // the legacy request helper keeps the body here
		found.body ??= asObject(asObject(current.context)?.data); // NodeApiError keeps it here
		found.status ??= Number(current.httpCode ?? current.statusCode) || undefined;
		if (found.body !== undefined && found.status !== undefined) break;
		current = asObject(current.cause) ?? asObject(current.errorResponse);
	}
	if (typeof found.body === 'string') {
		try {
			found.body = JSON.parse(found.body);
		} catch {
			// not JSON: keep the text
		}
	}
	return found;
}

/** The backend's `{"error": ...}` as a message, with `details` / `issues` as the description; on the
 * OpenAI-compatible routes `{"error": {"message", "param", ...}}`, with the parameter as the description. */
export function describeBackendError(body: unknown): { message?: string; description?: string } {
	const object = asObject(body);
	const openai = asObject(object?.error);
	if (openai && typeof openai.message === 'string') {
		const param = typeof openai.param === 'string' ? `parameter: ${openai.param}` : undefined;
		return { message: openai.message, description: param };
	}
	if (!object || typeof object.error !== 'string') return {};
	const lines: string[] = [];
	for (const key of ['details', 'issues']) {
		const list = object[key];
		if (!Array.isArray(list)) continue;
		for (const entry of list) {
			const item = asObject(entry);
			if (!item) continue;
			const where =
				item.where ?? (item.file !== undefined ? `${String(item.file)}:${String(item.line)}` : '');
			lines.push(where ? `${String(where)}: ${String(item.problem)}` : String(item.problem));
		}
	}
	return { message: object.error, description: lines.length ? lines.join('\n') : undefined };
}

export function toNodeApiError(node: INode, error: unknown, itemIndex?: number): NodeApiError {
	const { status, body } = findErrorResponse(error);
	const { message, description } = describeBackendError(body);
	if (message === undefined) {
		if (error instanceof NodeApiError) {
			if (itemIndex !== undefined) error.context.itemIndex = itemIndex;
			return error;
		}
		return new NodeApiError(node, asObject(error) as JsonObject, { itemIndex });
	}
	return new NodeApiError(node, body as JsonObject, {
		message,
		description,
		httpCode: status !== undefined ? String(status) : undefined,
		itemIndex,
	});
}
