import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem, segment } from '../../utils';

export const listDescription: INodeProperties[] = [
	{
		displayName: 'Adapter',
		name: 'ref',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'receipts@prod',
		description: 'Name, name@version or name@alias',
		displayOptions: { show: { resource: ['adapter'], operation: ['get'] } },
	},
	{
		displayName: 'Return All',
		name: 'returnAll',
		type: 'boolean',
		default: false,
		description: 'Whether to return all results or only up to a given limit',
		displayOptions: { show: { resource: ['adapter'], operation: ['list'] } },
	},
	{
		displayName: 'Limit',
		name: 'limit',
		type: 'number',
		typeOptions: { minValue: 1 },
		default: 50,
		description: 'Max number of results to return',
		displayOptions: { show: { resource: ['adapter'], operation: ['list'], returnAll: [false] } },
	},
];

/** One output item per adapter name, with its versions (newest first) and aliases: all, or the first Limit. */
export const list = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const adapters = (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: '/v1/adapters' },
		itemIndex,
	)) as IDataObject[];
	if (this.getNodeParameter('returnAll', itemIndex, false) as boolean) return adapters;
	const limit = Math.max(1, Number(this.getNodeParameter('limit', itemIndex, 50)));
	return adapters.slice(0, limit);
});

export const get = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const ref = segment(this, 'ref', itemIndex, 'Adapter');
	return (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: `/v1/adapters/${ref}` },
		itemIndex,
	)) as IDataObject;
});
