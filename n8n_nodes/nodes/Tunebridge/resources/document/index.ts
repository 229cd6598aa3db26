import type { INodeProperties } from 'n8n-workflow';
import type { OperationExecutor } from '../../utils';
import { extract, extractDescription } from './extract';

export const documentOperations: Record<string, OperationExecutor> = { extract };

export const documentDescription: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['document'] } },
		options: [
			{
				name: 'Extract',
				value: 'extract',
				action: 'Extract fields from a document',
				description: 'Extract fields as JSON, with per-field confidence and review flags',
			},
		],
		default: 'extract',
	},
	...extractDescription,
];
