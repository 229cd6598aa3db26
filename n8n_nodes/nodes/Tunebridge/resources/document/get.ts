import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem, segment } from '../../utils';

/** The document ID parameter, shared by Get and Review. */
export const documentIdDescription: INodeProperties[] = [
	{
		displayName: 'Document ID',
		name: 'documentId',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'e.g. 3f9a0c2b7d41e856',
		description: "The document's ID, as Process returned it",
		displayOptions: { show: { resource: ['document'], operation: ['review', 'get'] } },
	},
];

export const get = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const id = segment(this, 'documentId', itemIndex, 'Document ID');
	return (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: `/v1/documents/${id}` },
		itemIndex,
	)) as IDataObject;
});
