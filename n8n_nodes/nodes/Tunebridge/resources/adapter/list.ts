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
];

/** One output item per adapter name, with its versions (newest first) and aliases. */
export const list = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	return (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: '/v1/adapters' },
		itemIndex,
	)) as IDataObject[];
});

export const get = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const ref = segment(this, 'ref', itemIndex, 'Adapter');
	return (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: `/v1/adapters/${ref}` },
		itemIndex,
	)) as IDataObject;
});
