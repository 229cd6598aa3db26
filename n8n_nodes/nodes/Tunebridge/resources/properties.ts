import type { IDisplayOptions, INodeProperties, INodePropertyOptions } from 'n8n-workflow';

/**
 * Properties that more than one operation shows, each described once.
 *
 * n8n's lint checks a property's texts where they are literals: keep them here, in the builders,
 * and let callers pass only what differs. It cannot see into the arrays given to a builder, so
 * `test/properties.test.ts` checks what it would (collection options sorted by display name).
 */

/** The `displayOptions.show` of an operation's properties, e.g. `{ resource: ['chat'], operation: ['complete'] }`. */
export type Show = NonNullable<IDisplayOptions['show']>;

/** An operation's "Options" collection; give `options` sorted by display name. */
export function optionsCollection(show: Show, options: INodeProperties[]): INodeProperties {
	return {
		displayName: 'Options',
		name: 'options',
		type: 'collection',
		placeholder: 'Add Option',
		default: {},
		displayOptions: { show },
		options,
	};
}

export interface DocumentInput {
	/** The source selected at first; it is listed, and its property shown, first. */
	default: 'text' | 'binary';
	/** The "binary" choice: what kind of file the operation reads. */
	binary: INodePropertyOptions & { value: 'binary' };
	/** The hint under Input Binary Field. */
	binaryHint: string;
}

/**
 * Where the document comes from (`inputSource`: `text` or `binary`), then the property each
 * source needs: `text`, or `binaryPropertyName`.
 */
export function documentInput(
	show: Show,
	{ default: defaultSource, binary: binaryOption, binaryHint }: DocumentInput,
): INodeProperties[] {
	const text: INodeProperties = {
		displayName: 'Text',
		name: 'text',
		type: 'string',
		typeOptions: { rows: 4 },
		default: '',
		required: true,
		placeholder: 'e.g. {{ $json.text }}',
		description: "The document's text (OCR output, e-mail body, ...)",
		displayOptions: { show: { ...show, inputSource: ['text'] } },
	};
	const binary: INodeProperties = {
		displayName: 'Input Binary Field',
		name: 'binaryPropertyName',
		type: 'string',
		default: 'data',
		required: true,
		hint: binaryHint,
		displayOptions: { show: { ...show, inputSource: ['binary'] } },
	};
	const sources: Array<[INodePropertyOptions, INodeProperties]> = [
		[
			{ name: 'Text', value: 'text', description: 'The document text, e.g. from an expression' },
			text,
		],
		[binaryOption, binary],
	];
	if (defaultSource === 'binary') sources.reverse();
	return [
		{
			displayName: 'Input',
			name: 'inputSource',
			type: 'options',
			options: sources.map(([option]) => option),
			default: defaultSource,
			displayOptions: { show },
		},
		...sources.map(([, property]) => property),
	];
}

/** Shown from node version 2 on (resource locators), and up to version 1 (typed names). */
export const FROM_V2: Show = { '@version': [{ _cnd: { gte: 2 } }] };
export const V1: Show = { '@version': [1] };

/**
 * The labelled dataset an operation works on: a typed name in version 1, a resource locator in
 * version 2 (listed from the service, or typed: a new dataset is created on first use). Both are
 * the parameter `dataset`; read it with `locatorValue`.
 */
export function datasetName(
	show: Show,
	placeholder: string,
	description?: string,
): INodeProperties[] {
	const described = description === undefined ? {} : { description };
	return [
		{
			displayName: 'Dataset Name',
			name: 'dataset',
			type: 'string',
			default: '',
			required: true,
			placeholder,
			...described,
			displayOptions: { show: { ...show, ...V1 } },
		},
		{
			displayName: 'Dataset Name',
			name: 'dataset',
			type: 'resourceLocator',
			default: { mode: 'list', value: '' },
			required: true,
			...described,
			modes: [
				{
					displayName: 'From List',
					name: 'list',
					type: 'list',
					typeOptions: { searchListMethod: 'searchDatasets', searchable: true },
				},
				{ displayName: 'By Name', name: 'name', type: 'string', placeholder },
			],
			displayOptions: { show: { ...show, ...FROM_V2 } },
		},
	];
}

/** A fine-tuned adapter to run, by reference; a top-level property once given `displayOptions`. */
export function adapterOption(): INodeProperties {
	return {
		displayName: 'Adapter',
		name: 'adapter',
		type: 'string',
		default: '',
		placeholder: 'receipts@prod',
		description: 'A fine-tuned adapter: name, name@version or name@alias. Empty: the base model.',
	};
}

/** `adapterOption` as a resource locator (node version 2): listed from the service, or typed. */
export function adapterLocator(): INodeProperties {
	return {
		displayName: 'Adapter',
		name: 'adapter',
		type: 'resourceLocator',
		default: { mode: 'list', value: '' },
		description: 'A fine-tuned adapter: name, name@version or name@alias. Empty: the base model.',
		modes: [
			{
				displayName: 'From List',
				name: 'list',
				type: 'list',
				typeOptions: { searchListMethod: 'searchAdapters', searchable: true },
			},
			{
				displayName: 'By Reference',
				name: 'reference',
				type: 'string',
				placeholder: 'receipts@prod',
			},
		],
	};
}

/** A parameter's value whether it is a plain string (version 1) or a resource locator (version 2). */
export function locatorValue(value: unknown): string {
	if (value !== null && typeof value === 'object' && 'value' in value) {
		return String((value as { value: unknown }).value ?? '').trim();
	}
	return String(value ?? '').trim();
}

/** The base model; an operation may say what the default is in its own `description`. */
export function modelOption(): INodeProperties {
	return {
		displayName: 'Base Model',
		name: 'model',
		type: 'string',
		default: '',
		description: 'Base model to use when no adapter is given (default: the service default)',
	};
}

export function maxTokensOption(defaultTokens: number): INodeProperties {
	return {
		displayName: 'Max Tokens',
		name: 'maxTokens',
		type: 'number',
		typeOptions: { minValue: 1 },
		default: defaultTokens,
		description: 'The most tokens to generate',
	};
}

/** Where the service POSTs (signed) when a job ends. */
export function callbackUrlOption(): INodeProperties {
	return {
		displayName: 'Callback URL',
		name: 'callbackUrl',
		type: 'string',
		default: '',
		placeholder: 'e.g. {{ $execution.resumeUrl }}',
		description: "POSTed (signed) when the job ends, e.g. a Wait node's resume URL",
	};
}
