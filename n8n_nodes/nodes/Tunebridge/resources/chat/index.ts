import type { INodeProperties } from 'n8n-workflow';
import type { OperationExecutor } from '../../utils';
import { complete, completeDescription } from './complete';

export const chatOperations: Record<string, OperationExecutor> = { complete };

export const chatDescription: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['chat'] } },
		options: [
			{
				name: 'Complete',
				value: 'complete',
				action: 'Complete a chat',
				description: 'An OpenAI-style chat completion from a base model or an adapter',
			},
		],
		default: 'complete',
	},
	...completeDescription,
];
