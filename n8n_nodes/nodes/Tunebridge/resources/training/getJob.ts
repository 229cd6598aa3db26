import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem, segment } from '../../utils';

export const getJobDescription: INodeProperties[] = [
	{
		displayName: 'Job ID',
		name: 'jobId',
		type: 'string',
		default: '',
		required: true,
		description: "The job's ID, as Start Job returned it",
		displayOptions: {
			show: { resource: ['training'], operation: ['getJob', 'getEvents', 'waitForJob'] },
		},
	},
	{
		displayName: 'After Event',
		name: 'after',
		type: 'number',
		typeOptions: { minValue: 0 },
		default: 0,
		description: 'Only events with a sequence number above this one',
		displayOptions: { show: { resource: ['training'], operation: ['getEvents'] } },
	},
];

export const getJob = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const id = segment(this, 'jobId', itemIndex, 'Job ID');
	return (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: `/v1/jobs/${id}` },
		itemIndex,
	)) as IDataObject;
});

/** One output item per event. */
export const getEvents = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const id = segment(this, 'jobId', itemIndex, 'Job ID');
	const after = Number(this.getNodeParameter('after', itemIndex, 0));
	return (await tunebridgeRequest.call(
		this,
		{ method: 'GET', path: `/v1/jobs/${id}/events`, qs: { after } },
		itemIndex,
	)) as IDataObject[];
});
