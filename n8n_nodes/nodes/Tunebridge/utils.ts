import type { IDataObject, IExecuteFunctions, INodeExecutionData, INodeProperties } from 'n8n-workflow';
import { NodeOperationError, sleep } from 'n8n-workflow';

/** Runs one operation over all input items; returns the output items. */
export type OperationExecutor = (
	this: IExecuteFunctions,
	items: INodeExecutionData[],
) => Promise<INodeExecutionData[]>;

export function errorMessage(error: unknown): string {
	return error instanceof Error ? error.message : String(error);
}

/** Makes a per-item operation: one call per input item, `continueOnFail` handled here. */
export function perItem(
	run: (this: IExecuteFunctions, itemIndex: number) => Promise<IDataObject | IDataObject[]>,
): OperationExecutor {
	return async function (this: IExecuteFunctions, items: INodeExecutionData[]) {
		const out: INodeExecutionData[] = [];
		for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
			try {
				const result = await run.call(this, itemIndex);
				for (const json of Array.isArray(result) ? result : [result]) {
					out.push({ json, pairedItem: { item: itemIndex } });
				}
			} catch (error) {
				if (this.continueOnFail()) {
					out.push({ json: { error: errorMessage(error) }, pairedItem: { item: itemIndex } });
					continue;
				}
				throw withItemIndex(this, error, itemIndex);
			}
		}
		return out;
	};
}

/** The usual Return All / Limit pair of a list operation, shown where `show` says. */
export function returnAllOrLimit(show: Record<string, string[]>): INodeProperties[] {
	return [
		{
			displayName: 'Return All',
			name: 'returnAll',
			type: 'boolean',
			default: false,
			description: 'Whether to return all results or only up to a given limit',
			displayOptions: { show },
		},
		{
			displayName: 'Limit',
			name: 'limit',
			type: 'number',
			typeOptions: { minValue: 1 },
			default: 50,
			description: 'Max number of results to return',
			displayOptions: { show: { ...show, returnAll: [false] } },
		},
	];
}

/** `results`, or their first Limit unless Return All is on (see `returnAllOrLimit`). */
export function limited(context: IExecuteFunctions, results: IDataObject[], itemIndex: number): IDataObject[] {
	if (context.getNodeParameter('returnAll', itemIndex, false) as boolean) return results;
	const limit = Math.max(1, Number(context.getNodeParameter('limit', itemIndex, 50)));
	return results.slice(0, limit);
}

export function withItemIndex(
	context: IExecuteFunctions,
	error: unknown,
	itemIndex: number,
): Error {
	if (error instanceof NodeOperationError || (error instanceof Error && 'context' in error)) {
		const withContext = error as Error & { context: IDataObject };
		withContext.context.itemIndex ??= itemIndex;
		return withContext;
	}
	return new NodeOperationError(context.getNode(), error as Error, { itemIndex });
}

/** A `json` value: parsed when the user typed JSON text, as-is when an expression gave an object. */
export function parseJson(
	context: IExecuteFunctions,
	value: unknown,
	itemIndex: number,
	label: string,
): unknown {
	if (typeof value !== 'string') return value;
	try {
		return JSON.parse(value);
	} catch (error) {
		throw new NodeOperationError(
			context.getNode(),
			`${label} is not valid JSON: ${errorMessage(error)}`,
			{
				itemIndex,
			},
		);
	}
}

export function isPlainObject(value: unknown): value is IDataObject {
	return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A JSON object (e.g. a JSON Schema) from a `json` value; anything else is a NodeOperationError. */
export function parseJsonObject(
	context: IExecuteFunctions,
	value: unknown,
	itemIndex: number,
	label: string,
): IDataObject {
	const parsed = parseJson(context, value, itemIndex, label);
	if (!isPlainObject(parsed)) {
		throw new NodeOperationError(context.getNode(), `${label} must be a JSON object`, {
			itemIndex,
		});
	}
	return parsed;
}

export function objectParameter(
	context: IExecuteFunctions,
	name: string,
	itemIndex: number,
	label: string,
): IDataObject {
	return parseJsonObject(context, context.getNodeParameter(name, itemIndex), itemIndex, label);
}

/** Path segment from user input, encoded (`receipts@prod` stays readable to the server). */
export function segment(
	context: IExecuteFunctions,
	name: string,
	itemIndex: number,
	label: string,
): string {
	const value = String(context.getNodeParameter(name, itemIndex) ?? '').trim();
	if (!value) {
		throw new NodeOperationError(context.getNode(), `${label} is empty`, { itemIndex });
	}
	return encodeURIComponent(value);
}

/**
 * Waits `ms` milliseconds; when `signal` aborts first (the execution was cancelled), stops waiting
 * at once and throws. Built on `sleep`, which every n8n-workflow 2.x exports (`sleepWithAbort` is
 * gone since 2.34).
 */
export async function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
	if (!signal) return await sleep(ms);
	const cancelled = () => new Error('The execution was cancelled');
	if (signal.aborted) throw cancelled();
	let onAbort = () => {};
	const aborted = new Promise<never>((_, reject) => {
		onAbort = () => reject(cancelled());
		signal.addEventListener('abort', onAbort, { once: true });
	});
	try {
		await Promise.race([sleep(ms), aborted]);
	} finally {
		signal.removeEventListener('abort', onAbort);
	}
}
