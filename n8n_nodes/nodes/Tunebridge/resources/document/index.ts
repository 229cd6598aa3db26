import type { INodeProperties } from 'n8n-workflow';
import type { OperationExecutor } from '../../utils';
import { extract, extractDescription } from './extract';
import { documentIdDescription, get } from './get';
import { listHeld, listHeldDescription } from './listHeld';
import { processDescription, processDocument } from './process';
import { review, reviewDescription } from './review';

export const documentOperations: Record<string, OperationExecutor> = {
	extract,
	process: processDocument,
	review,
	get,
	listHeld,
};

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
			{
				name: 'Get',
				value: 'get',
				action: 'Get a document',
				description: "A processed document's record: fields, decision, review",
			},
			{
				name: 'List Held for Review',
				value: 'listHeld',
				action: 'List documents held for review',
				description:
					'The documents waiting for a person, most informative first: label these first for a better model sooner',
			},
			{
				name: 'Process',
				value: 'process',
				action: 'Process a document',
				description:
					'Extract, validate and decide a file or text: approve, review or reject, with the reasons',
			},
			{
				name: 'Review',
				value: 'review',
				action: 'Review a document',
				description: 'Finish the review of a held document: corrections and/or a decision',
			},
		],
		default: 'extract',
	},
	...extractDescription,
	...processDescription,
	...documentIdDescription,
	...reviewDescription,
	...listHeldDescription,
];
