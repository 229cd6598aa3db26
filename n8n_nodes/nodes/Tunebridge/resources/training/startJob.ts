import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { objectParameter, parseJsonObject, perItem } from '../../utils';
import { callbackUrlOption, datasetName, locatorValue, optionsCollection } from '../properties';

const show = { resource: ['training'], operation: ['startJob'] };

export const startJobDescription: INodeProperties[] = [
	{
		displayName: 'Kind',
		name: 'kind',
		type: 'options',
		options: [
			{ name: 'Train', value: 'train', description: 'Fine-tune an adapter on the dataset' },
			{
				name: 'Evaluate',
				value: 'eval',
				description: 'Score the base model and adapters on the dataset',
			},
		],
		default: 'train',
		displayOptions: { show },
	},
	...datasetName(show, 'receipts'),
	{
		displayName: 'Adapter Name',
		name: 'adapterName',
		type: 'string',
		default: '',
		description: "Register the trained adapter under this name (default: the dataset's name)",
		displayOptions: { show: { ...show, kind: ['train'] } },
	},
	{
		displayName: 'Hyperparameters',
		name: 'hyperparameters',
		type: 'json',
		default: '{}',
		description:
			'Train: training options such as {"epochs": 3}. Evaluate: e.g. {"adapters": ["receipts@2"], "include_base": true}.',
		displayOptions: { show },
	},
	optionsCollection(show, [
		callbackUrlOption(),
		{
			displayName: 'Promote (Train Only)',
			name: 'promote',
			type: 'json',
			default: '{\n  "alias": "prod",\n  "dataset": "receipts-eval"\n}',
			description:
				"When training succeeds, evaluate the new version against the alias's and move the alias if it is better",
		},
	]),
];

export const startJob = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const kind = this.getNodeParameter('kind', itemIndex) as string;
	const dataset = locatorValue(this.getNodeParameter('dataset', itemIndex));
	if (!dataset)
		throw new NodeOperationError(this.getNode(), 'Dataset Name is empty', { itemIndex });
	const body: IDataObject = {
		kind,
		dataset,
		hyperparameters: objectParameter(this, 'hyperparameters', itemIndex, 'Hyperparameters'),
	};
	if (kind === 'train') {
		const adapterName = String(this.getNodeParameter('adapterName', itemIndex, '')).trim();
		if (adapterName) body.adapter_name = adapterName;
	}
	const options = this.getNodeParameter('options', itemIndex, {}) as IDataObject;
	if (options.callbackUrl) body.callback_url = options.callbackUrl;
	if (options.promote !== undefined && options.promote !== '') {
		body.promote = parseJsonObject(this, options.promote, itemIndex, 'Promote');
	}
	return (await tunebridgeRequest.call(
		this,
		{ method: 'POST', path: '/v1/jobs', body },
		itemIndex,
	)) as IDataObject;
});
