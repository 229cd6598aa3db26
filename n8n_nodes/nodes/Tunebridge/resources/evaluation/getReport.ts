import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem, segment } from '../../utils';

const show = { resource: ['evaluation'], operation: ['getReport'] };

export const getReportDescription: INodeProperties[] = [
	{
		displayName: 'Job ID',
		name: 'jobId',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'e.g. 5b1e0f3c9a7d4e21',
		description: "The evaluation job's ID, as Run returned it",
		displayOptions: { show },
	},
	{
		displayName: 'Include',
		name: 'include',
		type: 'multiOptions',
		options: [
			{
				name: 'Report (Markdown)',
				value: 'report',
				description: 'The report.md artifact, as the text of the "report" field',
			},
			{
				name: 'Scores (JSON)',
				value: 'eval',
				description: 'The scores the job wrote (per model and field), as the "eval" field',
			},
		],
		default: ['report', 'eval'],
		displayOptions: { show },
	},
];

/** An eval job's `report.md` (text) and `eval.json` (JSON) from `/v1/jobs/{id}/artifacts/{name}`. */
export const getReport = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const id = segment(this, 'jobId', itemIndex, 'Job ID');
	const include = this.getNodeParameter('include', itemIndex, ['report', 'eval']) as string[];
	const out: IDataObject = { job_id: decodeURIComponent(id) };
	if (include.includes('report')) {
		out.report = String(
			await tunebridgeRequest.call(
				this,
				{ method: 'GET', path: `/v1/jobs/${id}/artifacts/report.md`, encoding: 'text' },
				itemIndex,
			),
		);
	}
	if (include.includes('eval')) {
		out.eval = (await tunebridgeRequest.call(
			this,
			{ method: 'GET', path: `/v1/jobs/${id}/artifacts/eval.json` },
			itemIndex,
		)) as IDataObject;
	}
	return out;
});
