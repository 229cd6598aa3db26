import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { limited, perItem, returnAllOrLimit } from '../../utils';

const show = { resource: ['document'], operation: ['listHeld'] };

export const listHeldDescription: INodeProperties[] = [
	{
		displayName: 'Order By',
		name: 'orderBy',
		type: 'options',
		options: [
			{
				name: 'Most Informative First',
				value: 'value',
				description:
					'The documents whose corrections would teach the model most first (low confidence, disagreement, values not in the text, failed checks, new senders), each with its score and reasons',
			},
			{ name: 'Oldest First', value: '', description: 'In the order they were held' },
		],
		default: 'value',
		displayOptions: { show },
	},
	...returnAllOrLimit(show),
];

/** The request for the documents held for review, in the chosen order. */
export function listHeldQuery(orderBy: string): IDataObject {
	return orderBy ? { status: 'pending_review', order: orderBy } : { status: 'pending_review' };
}

/** One output item per document held for review: all, or the first Limit. */
export const listHeld = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const orderBy = String(this.getNodeParameter('orderBy', itemIndex, 'value'));
	const documents = (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: '/v1/documents', qs: listHeldQuery(orderBy) },
		itemIndex,
	)) as IDataObject[];
	return limited(this, documents, itemIndex);
});
