import type { INodeProperties } from 'n8n-workflow';
import type { OperationExecutor } from '../../utils';
import { getEvents, getJob, getJobDescription } from './getJob';
import { startJob, startJobDescription } from './startJob';
import { waitForJob, waitForJobDescription } from './waitForJob';

export const trainingOperations: Record<string, OperationExecutor> = {
	startJob,
	getJob,
	getEvents,
	waitForJob,
};

export const trainingDescription: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['training'] } },
		options: [
			{
				name: 'Get Events',
				value: 'getEvents',
				action: 'Get the events of a job',
				description: 'Progress, metrics and log events, one item each',
			},
			{
				name: 'Get Job',
				value: 'getJob',
				action: 'Get a job',
				description: 'Status, progress and result of a training or evaluation job',
			},
			{
				name: 'Start Job',
				value: 'startJob',
				action: 'Start a training or evaluation job',
				description: 'Queue a job on a dataset; it runs in the background',
			},
			{
				name: 'Wait for Job',
				value: 'waitForJob',
				action: 'Wait for a job to end',
				description: 'Poll a job until it succeeds, fails or is cancelled; output the job',
			},
		],
		default: 'startJob',
	},
	...startJobDescription,
	...getJobDescription,
	...waitForJobDescription,
];
