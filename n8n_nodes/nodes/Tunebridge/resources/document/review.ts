import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { objectParameter, perItem, segment } from '../../utils';
import { optionsCollection } from '../properties';

const show = { resource: ['document'], operation: ['review'] };

export const reviewDescription: INodeProperties[] = [
	{
		displayName: 'Corrections',
		name: 'corrections',
		type: 'json',
		default: '{}',
		description:
			'Corrected values by field or path, e.g. {"total": "18.40", "line_items[1].amount": 3}. They become training examples.',
		displayOptions: { show },
	},
	{
		displayName: 'Decision',
		name: 'decision',
		type: 'options',
		options: [
			{ name: 'Approve', value: 'approve' },
			{ name: 'By the Rules', value: '', description: 'The rules decide on the corrected record' },
			{ name: 'Reject', value: 'reject' },
			{ name: 'Review', value: 'review' },
		],
		default: '',
		displayOptions: { show },
	},
	{
		displayName: 'Note',
		name: 'note',
		type: 'string',
		default: '',
		description: "The reviewer's note, kept with the record",
		displayOptions: { show },
	},
	{
		displayName: 'Reviewer',
		name: 'reviewer',
		type: 'string',
		default: '',
		placeholder: 'ana',
		description: 'Who reviewed the document',
		displayOptions: { show },
	},
	optionsCollection(show, [
		{
			displayName: 'Corrections Dataset',
			name: 'correctionsDataset',
			type: 'string',
			default: '',
			description:
				"Where the corrections go: name-type, e.g. corrections-receipt (default: the service's)",
		},
	]),
];

export const review = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const id = segment(this, 'documentId', itemIndex, 'Document ID');
	const body: IDataObject = {
		fields: objectParameter(this, 'corrections', itemIndex, 'Corrections'),
	};
	const decision = String(this.getNodeParameter('decision', itemIndex, '')).trim();
	if (decision) body.decision = decision;
	for (const name of ['note', 'reviewer']) {
		const value = String(this.getNodeParameter(name, itemIndex, '')).trim();
		if (value) body[name] = value;
	}
	const options = this.getNodeParameter('options', itemIndex, {}) as IDataObject;
	const dataset = String(options.correctionsDataset ?? '').trim();
	if (dataset) body.corrections_dataset = dataset;
	return (await tunebridgeRequest.call(
		this,
		{ method: 'POST', path: `/v1/documents/${id}/review`, body },
		itemIndex,
	)) as IDataObject;
});
