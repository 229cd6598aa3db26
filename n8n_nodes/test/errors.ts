import type { JsonObject } from 'n8n-workflow';
import { NodeApiError } from 'n8n-workflow';
import { node } from './context';

/** What axios throws for an HTTP error status. */
export function axiosError(status: number, data: unknown) {
	return Object.assign(new Error(`Request failed with status code ${status}`), {
		isAxiosError: true,
		response: { status, statusText: 'error', headers: {}, data },
	});
}

/** What n8n's httpRequestWithAuthentication throws for an HTTP error status. */
export function n8nHttpError(status: number, data: unknown): NodeApiError {
	return new NodeApiError(node, axiosError(status, data) as unknown as JsonObject);
}
