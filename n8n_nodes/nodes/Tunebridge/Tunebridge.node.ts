import type {
	IExecuteFunctions,
	INodeExecutionData,
	INodeType,
	INodeTypeDescription,
} from 'n8n-workflow';
import { NodeConnectionTypes, NodeOperationError } from 'n8n-workflow';
import { adapterDescription, adapterOperations } from './resources/adapter';
import { chatDescription, chatOperations } from './resources/chat';
import { datasetDescription, datasetOperations } from './resources/dataset';
import { documentDescription, documentOperations } from './resources/document';
import { evaluationDescription, evaluationOperations } from './resources/evaluation';
import { trainingDescription, trainingOperations } from './resources/training';
import { searchAdapters, searchDatasets } from './methods';
import type { OperationExecutor } from './utils';
import { errorMessage, withItemIndex } from './utils';

const operations: Record<string, Record<string, OperationExecutor>> = {
	adapter: adapterOperations,
	chat: chatOperations,
	dataset: datasetOperations,
	document: documentOperations,
	evaluation: evaluationOperations,
	training: trainingOperations,
};

export class Tunebridge implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Tunebridge',
		name: 'tunebridge',
		icon: { light: 'file:tunebridge.svg', dark: 'file:tunebridge.dark.svg' },
		group: ['transform'],
		version: [1, 2],
		defaultVersion: 2,
		subtitle: '={{$parameter["operation"] + ": " + $parameter["resource"]}}',
		description:
			'Extract fields from documents, add labelled examples, train and promote adapters on a tunebridge service',
		defaults: { name: 'Tunebridge' },
		usableAsTool: true,
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: 'tunebridgeApi', required: true }],
		properties: [
			{
				displayName: 'Resource',
				name: 'resource',
				type: 'options',
				noDataExpression: true,
				options: [
					{ name: 'Adapter', value: 'adapter' },
					{ name: 'Chat', value: 'chat' },
					{ name: 'Dataset', value: 'dataset' },
					{ name: 'Document', value: 'document' },
					{ name: 'Evaluation', value: 'evaluation' },
					{ name: 'Training', value: 'training' },
				],
				default: 'document',
			},
			...documentDescription,
			...datasetDescription,
			...trainingDescription,
			...evaluationDescription,
			...adapterDescription,
			...chatDescription,
		],
	};

	methods = { listSearch: { searchAdapters, searchDatasets } };

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		try {
			const resource = this.getNodeParameter('resource', 0) as string;
			const operation = this.getNodeParameter('operation', 0) as string;
			const run = operations[resource]?.[operation];
			if (!run) {
				throw new NodeOperationError(
					this.getNode(),
					`Unsupported operation "${operation}" on "${resource}"`,
				);
			}
			// Operations handle continueOnFail per item (or per request); this catches the rest.
			return [await run.call(this, items)];
		} catch (error) {
			if (!this.continueOnFail()) throw withItemIndex(this, error, 0);
			return [
				items.map((_, item) => ({ json: { error: errorMessage(error) }, pairedItem: { item } })),
			];
		}
	}
}
