import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { objectParameter, perItem } from '../../utils';
import {
	adapterLocator,
	adapterOption,
	FROM_V2,
	locatorValue,
	V1,
	documentInput,
	maxTokensOption,
	modelOption,
	optionsCollection,
} from '../properties';

const show = { resource: ['document'], operation: ['extract'] };

export const extractDescription: INodeProperties[] = [
	...documentInput(show, {
		default: 'text',
		binary: {
			name: 'Text File (Binary)',
			value: 'binary',
			description: 'A .txt file in a binary property, read as UTF-8',
		},
		binaryHint: 'The name of the input binary field holding the text file',
	}),
	{
		displayName: 'Fields',
		name: 'schemaSource',
		type: 'options',
		options: [
			{ name: 'Preset', value: 'preset', description: 'A built-in schema: receipt or invoice' },
			{ name: 'Field List', value: 'fields', description: 'Field names; every value a string' },
			{ name: 'JSON Schema', value: 'jsonSchema', description: 'A JSON Schema object' },
			{
				name: "Adapter's Training Schema",
				value: 'adapter',
				description: 'The schema the adapter was trained on',
			},
		],
		default: 'preset',
		displayOptions: { show },
	},
	{
		displayName: 'Preset',
		name: 'preset',
		type: 'options',
		options: [
			{ name: 'Receipt', value: 'receipt' },
			{ name: 'Invoice', value: 'invoice' },
		],
		default: 'receipt',
		displayOptions: { show: { ...show, schemaSource: ['preset'] } },
	},
	{
		displayName: 'Field Names',
		name: 'fieldNames',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'vendor, date, total',
		description: 'Comma-separated names of the fields to extract',
		displayOptions: { show: { ...show, schemaSource: ['fields'] } },
	},
	{
		displayName: 'JSON Schema',
		name: 'jsonSchema',
		type: 'json',
		default:
			'{\n  "type": "object",\n  "properties": {\n    "total": { "type": "number" }\n  },\n  "required": ["total"]\n}',
		required: true,
		displayOptions: { show: { ...show, schemaSource: ['jsonSchema'] } },
	},
	{ ...adapterOption(), displayOptions: { show: { ...show, ...V1 } } },
	{ ...adapterLocator(), displayOptions: { show: { ...show, ...FROM_V2 } } },
	optionsCollection(show, [
		modelOption(),
		{
			displayName: 'Candidate Ranking',
			name: 'rank',
			type: 'options',
			default: '',
			options: [
				{
					name: 'Default',
					value: '',
					description:
						'Amounts and dates, where the adapter was trained on extraction data; otherwise off',
				},
				{ name: 'Off', value: 'off', description: 'The decoded answer as it is' },
				{
					name: 'Amounts and Dates',
					value: 'typed',
					description:
						'An amount or date the document does not print is replaced by the best one it does',
				},
				{
					name: 'Amounts, Dates and Lines',
					value: 'text',
					description: 'Also names and addresses printed as whole lines (slower)',
				},
			],
			description:
				'After decoding, let the model choose among the document’s candidate spans (an adapter trained on extraction data). A value ranking changed is never auto-approved.',
		},
		{
			displayName: 'Constrained Decoding',
			name: 'constrained',
			type: 'boolean',
			default: true,
			description:
				'Whether to decode under the schema (always valid JSON, with per-field confidence and grounding)',
		},
		maxTokensOption(512),
	]),
];

const TEXT_EXTENSIONS = ['txt', 'text'];

async function documentText(this: IExecuteFunctions, itemIndex: number): Promise<string> {
	if (this.getNodeParameter('inputSource', itemIndex) === 'text') {
		return String(this.getNodeParameter('text', itemIndex));
	}
	const property = this.getNodeParameter('binaryPropertyName', itemIndex) as string;
	const binary = this.helpers.assertBinaryData(itemIndex, property);
	const extension = (binary.fileExtension ?? binary.fileName?.split('.').pop() ?? '').toLowerCase();
	if (!binary.mimeType.startsWith('text/') && !TEXT_EXTENSIONS.includes(extension)) {
		throw new NodeOperationError(
			this.getNode(),
			`Binary field "${property}" holds ${binary.mimeType} (${binary.fileName ?? 'no file name'}), not a text file`,
			{
				itemIndex,
				description: 'Convert PDFs and images to text first, e.g. with the Extract From File node',
			},
		);
	}
	const buffer = await this.helpers.getBinaryDataBuffer(itemIndex, property);
	return buffer.toString('utf8');
}

function schema(this: IExecuteFunctions, itemIndex: number): IDataObject['schema'] {
	switch (this.getNodeParameter('schemaSource', itemIndex)) {
		case 'preset':
			return this.getNodeParameter('preset', itemIndex) as string;
		case 'fields': {
			const names = String(this.getNodeParameter('fieldNames', itemIndex))
				.split(',')
				.map((name) => name.trim())
				.filter((name) => name);
			if (!names.length) {
				throw new NodeOperationError(this.getNode(), 'Field Names is empty', { itemIndex });
			}
			return names;
		}
		case 'jsonSchema':
			return objectParameter(this, 'jsonSchema', itemIndex, 'JSON Schema');
		default:
			return undefined; // the adapter's training schema
	}
}

export const extract = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const text = await documentText.call(this, itemIndex);
	if (!text.trim()) {
		throw new NodeOperationError(this.getNode(), 'The document text is empty', { itemIndex });
	}
	const body: IDataObject = { text };
	const fields = schema.call(this, itemIndex);
	if (fields !== undefined) body.schema = fields;
	const adapter = locatorValue(this.getNodeParameter('adapter', itemIndex, ''));
	if (adapter) body.adapter = adapter;
	const options = this.getNodeParameter('options', itemIndex, {}) as IDataObject;
	if (options.model) body.model = options.model;
	if (options.constrained !== undefined) body.constrained = options.constrained;
	if (options.rank === 'off') body.rank = false;
	else if (options.rank) body.rank = options.rank;
	if (options.maxTokens !== undefined) body.max_tokens = options.maxTokens;
	return (await tunebridgeRequest.call(
		this,
		{ method: 'POST', path: '/v1/extract', body },
		itemIndex,
	)) as IDataObject;
});
