import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { limited, perItem, returnAllOrLimit, segment } from '../../utils';

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
	...returnAllOrLimit({ resource: ['adapter'], operation: ['list'] }),
];

/** One output item per adapter name, with its versions (newest first) and aliases: all, or the first Limit. */
export const list = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const adapters = (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: '/v1/adapters' },
		itemIndex,
	)) as IDataObject[];
	return limited(this, adapters, itemIndex);
});

export const get = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const ref = segment(this, 'ref', itemIndex, 'Adapter');
	return (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: `/v1/adapters/${ref}` },
		itemIndex,
	)) as IDataObject;
});
