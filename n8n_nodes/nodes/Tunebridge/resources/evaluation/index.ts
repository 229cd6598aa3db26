import type { INodeProperties } from 'n8n-workflow';
import type { OperationExecutor } from '../../utils';
import { getReport, getReportDescription } from './getReport';
import { run, runDescription } from './run';

export const evaluationOperations: Record<string, OperationExecutor> = { run, getReport };

export const evaluationDescription: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['evaluation'] } },
		options: [
			{
				name: 'Get Report',
				value: 'getReport',
				action: 'Get an evaluation report',
				description: "An evaluation job's report (Markdown) and scores (JSON)",
			},
			{
				name: 'Run',
				value: 'run',
				action: 'Run an evaluation',
				description:
					'Score the base model and adapters on a dataset, optionally promoting the better adapter',
			},
		],
		default: 'run',
	},
	...runDescription,
	...getReportDescription,
];
