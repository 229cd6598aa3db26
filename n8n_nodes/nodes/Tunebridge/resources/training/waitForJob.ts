import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem, segment, sleepUnlessAborted } from '../../utils';

const show = { resource: ['training'], operation: ['waitForJob'] };

/** The statuses a job does not leave. */
export const ENDED = ['succeeded', 'failed', 'cancelled'];

export const waitForJobDescription: INodeProperties[] = [
	{
		displayName: 'Poll Interval (Seconds)',
		name: 'pollInterval',
		type: 'number',
		typeOptions: { minValue: 1 },
		default: 10,
		description: 'How often to ask for the job',
		displayOptions: { show },
	},
	{
		displayName: 'Timeout (Minutes)',
		name: 'timeoutMinutes',
		type: 'number',
		typeOptions: { minValue: 0 },
		default: 30,
		description:
			'Give up (an error) when the job has not ended after this long; the job keeps running',
		displayOptions: { show },
	},
	{
		displayName: 'Error When the Job Fails',
		name: 'errorOnFailure',
		type: 'boolean',
		default: true,
		description:
			'Whether a failed or cancelled job is an error (with On Error → Continue: an item with the error). Off: the job is output as it ended.',
		displayOptions: { show },
	},
];

/** Polls `GET /v1/jobs/{id}` until the job ends or the timeout passes; outputs the job. */
export const waitForJob = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const id = segment(this, 'jobId', itemIndex, 'Job ID');
	const intervalMs =
		Math.max(1, Number(this.getNodeParameter('pollInterval', itemIndex, 10))) * 1000;
	const timeoutMs =
		Math.max(0, Number(this.getNodeParameter('timeoutMinutes', itemIndex, 30))) * 60_000;
	const errorOnFailure = this.getNodeParameter('errorOnFailure', itemIndex, true) as boolean;
	const deadline = Date.now() + timeoutMs;
	const signal = this.getExecutionCancelSignal?.();
	for (;;) {
		const job = (await tunebridgeRequest.call(
			this,
			{ method: 'GET', path: `/v1/jobs/${id}` },
			itemIndex,
		)) as IDataObject;
		const status = String(job.status);
		if (ENDED.includes(status)) {
			if (status !== 'succeeded' && errorOnFailure) {
				const reason = job.error ? `: ${String(job.error)}` : '';
				throw new NodeOperationError(
					this.getNode(),
					status === 'failed'
						? `Job ${String(job.id ?? id)} failed${reason}`
						: `Job ${String(job.id ?? id)} was cancelled${reason}`,
					{ itemIndex, description: JSON.stringify(job.result ?? job.progress ?? {}) },
				);
			}
			return job;
		}
		const left = deadline - Date.now();
		if (left <= 0) {
			throw new NodeOperationError(
				this.getNode(),
				`Job ${String(job.id ?? id)} is still ${status} after ${timeoutMs / 60_000} minutes`,
				{ itemIndex, description: 'The job keeps running; wait again, or raise the timeout' },
			);
		}
		await sleepUnlessAborted(Math.min(intervalMs, left), signal);
	}
});
