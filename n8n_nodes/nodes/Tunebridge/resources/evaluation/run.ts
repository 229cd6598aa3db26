import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem } from '../../utils';
import {
	callbackUrlOption,
	datasetName,
	locatorValue,
	modelOption,
	optionsCollection,
} from '../properties';

const show = { resource: ['evaluation'], operation: ['run'] };

export const runDescription: INodeProperties[] = [
	...datasetName(
		show,
		'receipts-eval',
		'The labelled dataset to score on (held out from training)',
	),
	{
		displayName: 'Adapters',
		name: 'adapters',
		type: 'string',
		default: '',
		placeholder: 'receipts@prod, receipts@3',
		description: 'Comma-separated adapter references to evaluate: name, name@version or name@alias',
		displayOptions: { show },
	},
	{
		displayName: 'Include Base Model',
		name: 'includeBase',
		type: 'boolean',
		default: true,
		description: 'Whether to evaluate the base model too, as the baseline',
		displayOptions: { show },
	},
	{
		displayName: 'Promote If Better',
		name: 'promote',
		type: 'boolean',
		default: false,
		description:
			"Whether to move an alias to the (single) adapter when it beats the alias's current version",
		displayOptions: { show },
	},
	{
		displayName: 'Alias',
		name: 'promoteAlias',
		type: 'string',
		default: 'prod',
		required: true,
		displayOptions: { show: { ...show, promote: [true] } },
	},
	{
		displayName: 'Minimum Gain',
		name: 'minGain',
		type: 'number',
		typeOptions: { minValue: -1, maxValue: 1, numberPrecision: 4 },
		default: 0,
		description: 'Micro-F1 the adapter must gain over the current version (0: not worse)',
		displayOptions: { show: { ...show, promote: [true] } },
	},
	{
		displayName: 'Maximum Field Drop',
		name: 'maxFieldDrop',
		type: 'number',
		typeOptions: { minValue: 0, maxValue: 1, numberPrecision: 4 },
		default: 0.05,
		description: 'The largest F1 drop allowed on any single field',
		displayOptions: { show: { ...show, promote: [true] } },
	},
	optionsCollection(show, [
		{ ...modelOption(), description: "Base model (default: the first adapter's base)" },
		{
			displayName: 'Batch Size',
			name: 'batchSize',
			type: 'number',
			typeOptions: { minValue: 1 },
			default: 8,
		},
		callbackUrlOption(),
		{
			displayName: 'Example Limit',
			name: 'exampleLimit',
			type: 'number',
			typeOptions: { minValue: 0 },
			default: 0,
			description: 'Score the first N examples only (0: all)',
		},
		{
			displayName: 'Max New Tokens',
			name: 'maxNewTokens',
			type: 'number',
			typeOptions: { minValue: 0 },
			default: 0,
			description: 'Tokens to generate per example (0: 48 per field + 32)',
		},
	]),
];

/** `POST /v1/jobs` with kind `eval`; outputs the queued job. */
export const run = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const dataset = locatorValue(this.getNodeParameter('dataset', itemIndex));
	if (!dataset)
		throw new NodeOperationError(this.getNode(), 'Dataset Name is empty', { itemIndex });
	const adapters = String(this.getNodeParameter('adapters', itemIndex, ''))
		.split(',')
		.map((name) => name.trim())
		.filter((name) => name);
	const includeBase = this.getNodeParameter('includeBase', itemIndex, true) as boolean;
	if (!adapters.length && !includeBase) {
		throw new NodeOperationError(
			this.getNode(),
			'Nothing to evaluate: give adapters, or include the base model',
			{ itemIndex },
		);
	}
	const hyperparameters: IDataObject = { adapters, include_base: includeBase };
	if (this.getNodeParameter('promote', itemIndex, false) as boolean) {
		if (adapters.length !== 1) {
			throw new NodeOperationError(
				this.getNode(),
				`Promote If Better needs exactly one adapter, got ${adapters.length}`,
				{ itemIndex },
			);
		}
		const alias = String(this.getNodeParameter('promoteAlias', itemIndex, 'prod')).trim();
		if (!alias) throw new NodeOperationError(this.getNode(), 'Alias is empty', { itemIndex });
		hyperparameters.promote = {
			alias,
			min_gain: Number(this.getNodeParameter('minGain', itemIndex, 0)),
			max_field_drop: Number(this.getNodeParameter('maxFieldDrop', itemIndex, 0.05)),
		};
	}
	const options = this.getNodeParameter('options', itemIndex, {}) as IDataObject;
	if (options.model) hyperparameters.model = options.model;
	if (options.exampleLimit !== undefined) hyperparameters.limit = options.exampleLimit;
	if (options.batchSize !== undefined) hyperparameters.batch_size = options.batchSize;
	if (options.maxNewTokens !== undefined) hyperparameters.max_new_tokens = options.maxNewTokens;
	const body: IDataObject = { kind: 'eval', dataset, hyperparameters };
	if (options.callbackUrl) body.callback_url = options.callbackUrl;
	return (await tunebridgeRequest.call(
		this,
		{ method: 'POST', path: '/v1/jobs', body },
		itemIndex,
	)) as IDataObject;
});
