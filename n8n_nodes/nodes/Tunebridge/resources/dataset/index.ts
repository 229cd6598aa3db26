import type { INodeProperties } from 'n8n-workflow';
import type { OperationExecutor } from '../../utils';
import { addExamples, addExamplesDescription } from './addExamples';

export const datasetOperations: Record<string, OperationExecutor> = { addExamples };

export const datasetDescription: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['dataset'] } },
		options: [
			{
				name: 'Add Labelled Examples',
				value: 'addExamples',
				action: 'Add labelled examples to a dataset',
				description: 'Append the input items to a dataset as JSON lines (one request per batch)',
			},
		],
		default: 'addExamples',
	},
	...addExamplesDescription,
];
