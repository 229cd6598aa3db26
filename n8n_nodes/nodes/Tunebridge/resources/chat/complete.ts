import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { objectParameter, perItem } from '../../utils';
import { maxTokensOption, optionsCollection } from '../properties';

const show = { resource: ['chat'], operation: ['complete'] };

export const completeDescription: INodeProperties[] = [
	{
		displayName: 'Model',
		name: 'model',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'receipts@prod',
		description: 'A base model, or an adapter: name, name@version or name@alias',
		displayOptions: { show },
	},
	{
		displayName: 'Messages',
		name: 'messages',
		type: 'fixedCollection',
		typeOptions: { multipleValues: true, sortable: true },
		placeholder: 'Add Message',
		default: { values: [{ role: 'user', content: '' }] },
		displayOptions: { show },
		options: [
			{
				displayName: 'Message',
				name: 'values',
				values: [
					{
						displayName: 'Role',
						name: 'role',
						type: 'options',
						options: [
							{ name: 'System', value: 'system' },
							{ name: 'User', value: 'user' },
							{ name: 'Assistant', value: 'assistant' },
						],
						default: 'user',
					},
					{
						displayName: 'Content',
						name: 'content',
						type: 'string',
						typeOptions: { rows: 3 },
						default: '',
					},
				],
			},
		],
	},
	{
		displayName: 'Response Format',
		name: 'responseFormat',
		type: 'options',
		options: [
			{ name: 'Text', value: 'text' },
			{
				name: 'JSON Schema',
				value: 'jsonSchema',
				description: 'The answer is decoded under the schema, so it always parses and validates',
			},
		],
		default: 'text',
		displayOptions: { show },
	},
	{
		displayName: 'JSON Schema',
		name: 'jsonSchema',
		type: 'json',
		default:
			'{\n  "type": "object",\n  "properties": {\n    "answer": { "type": "string" }\n  },\n  "required": ["answer"]\n}',
		required: true,
		displayOptions: { show: { ...show, responseFormat: ['jsonSchema'] } },
	},
	optionsCollection(show, [
		maxTokensOption(256),
		{
			displayName: 'Seed',
			name: 'seed',
			type: 'number',
			default: 0,
			description: 'Seed for sampled (temperature above 0) generation',
		},
		{
			displayName: 'Temperature',
			name: 'temperature',
			type: 'number',
			typeOptions: { minValue: 0, maxValue: 2, numberPrecision: 2 },
			default: 0,
			description: 'Sampling temperature; 0 is greedy (deterministic)',
		},
	]),
];

export const complete = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const model = String(this.getNodeParameter('model', itemIndex)).trim();
	const collection = this.getNodeParameter('messages', itemIndex, {}) as {
		values?: Array<{ role: string; content: string }>;
	};
	const messages = (collection.values ?? []).map(({ role, content }) => ({ role, content }));
	if (!model) throw new NodeOperationError(this.getNode(), 'Model is empty', { itemIndex });
	if (!messages.length) {
		throw new NodeOperationError(this.getNode(), 'Add at least one message', { itemIndex });
	}
	const body: IDataObject = { model, messages };
	if (this.getNodeParameter('responseFormat', itemIndex) === 'jsonSchema') {
		body.response_format = {
			type: 'json_schema',
			json_schema: {
				name: 'answer',
				schema: objectParameter(this, 'jsonSchema', itemIndex, 'JSON Schema'),
			},
		};
	}
	const options = this.getNodeParameter('options', itemIndex, {}) as IDataObject;
	if (options.maxTokens !== undefined) body.max_tokens = options.maxTokens;
	if (options.temperature !== undefined) body.temperature = options.temperature;
	if (options.seed !== undefined) body.seed = options.seed;
	return (await tunebridgeRequest.call(
		this,
		{ method: 'POST', path: '/v1/chat/completions', body },
		itemIndex,
	)) as IDataObject;
});
