import type {
	IBinaryData,
	IExecuteFunctions,
	IHttpRequestOptions,
	INode,
	INodeExecutionData,
} from 'n8n-workflow';
import { Tunebridge } from '../nodes/Tunebridge/Tunebridge.node';

export const node: INode = {
	id: 'node-1',
	name: 'Tunebridge',
	type: 'n8n-nodes-tunebridge.tunebridge',
	typeVersion: 1,
	position: [0, 0],
	parameters: {},
};

/** A parameter value, or a function of the item index (like an expression). */
type Param = unknown | ((itemIndex: number) => unknown);

export interface MockOptions {
	params: Record<string, Param>;
	items?: INodeExecutionData[];
	response?: unknown | ((options: IHttpRequestOptions) => unknown);
	continueOnFail?: boolean;
	binary?: Record<string, { meta: IBinaryData; content: string }>;
	baseUrl?: string;
	/** The execution's cancel signal (`getExecutionCancelSignal`). */
	signal?: AbortSignal;
}

/** A mocked IExecuteFunctions: records every request the node makes, answers with `response`. */
export function mockContext(options: MockOptions) {
	const requests: Array<{ credentialType: string; options: IHttpRequestOptions }> = [];
	const items = options.items ?? [{ json: {} }];
	const httpRequestWithAuthentication = vi.fn(
		async (credentialType: string, request: IHttpRequestOptions) => {
			requests.push({ credentialType, options: request });
			const { response } = options;
			return typeof response === 'function' ? await response(request) : response;
		},
	);
	const context = {
		getInputData: () => items,
		getNode: () => node,
		getNodeParameter: (name: string, itemIndex: number, fallback?: unknown) => {
			const value = options.params[name];
			if (value === undefined) {
				if (fallback !== undefined) return fallback;
				throw new Error(`Could not get parameter "${name}"`);
			}
			return typeof value === 'function' ? (value as (i: number) => unknown)(itemIndex) : value;
		},
		getCredentials: async () => ({
			baseUrl: options.baseUrl ?? 'http://tunebridge.test:8000/',
			apiKey: 'key',
		}),
		continueOnFail: () => options.continueOnFail ?? false,
		getExecutionCancelSignal: () => options.signal,
		helpers: {
			httpRequestWithAuthentication,
			assertBinaryData: (_itemIndex: number, property: string) => {
				const found = options.binary?.[property];
				if (!found)
					throw new Error(
						`This operation expects the node's input data to contain a binary file '${property}'`,
					);
				return found.meta;
			},
			getBinaryDataBuffer: async (_itemIndex: number, property: string) =>
				Buffer.from(options.binary?.[property]?.content ?? '', 'utf8'),
		},
	} as unknown as IExecuteFunctions;
	return { context, requests, httpRequestWithAuthentication, items };
}

export async function run(options: MockOptions) {
	const mock = mockContext(options);
	const output = await new Tunebridge().execute.call(mock.context);
	return { ...mock, output: output[0] };
}
