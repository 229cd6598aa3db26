import type {
	IDataObject,
	IExecuteFunctions,
	INodeExecutionData,
	INodeProperties,
	IPairedItemData,
} from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { errorMessage, isPlainObject, parseJson, withItemIndex } from '../../utils';
import { datasetName, locatorValue, optionsCollection } from '../properties';

const show = { resource: ['dataset'], operation: ['addExamples'] };

export const addExamplesDescription: INodeProperties[] = [
	...datasetName(show, 'receipts', 'The dataset to append to (created on first use)'),
	{
		displayName: 'Record',
		name: 'recordFormat',
		type: 'options',
		options: [
			{
				name: 'Text and Fields',
				value: 'extraction',
				description: 'An extraction example: the document text and its correct fields',
			},
			{
				name: 'Whole Item',
				value: 'item',
				description:
					"Send each item's JSON as it is (messages, prompt/completion, instruction/output or text/fields)",
			},
		],
		default: 'extraction',
		displayOptions: { show },
	},
	{
		displayName: 'Text',
		name: 'text',
		type: 'string',
		typeOptions: { rows: 3 },
		default: '',
		required: true,
		placeholder: 'e.g. {{ $json.text }}',
		displayOptions: { show: { ...show, recordFormat: ['extraction'] } },
	},
	{
		displayName: 'Fields',
		name: 'fields',
		type: 'json',
		default: '',
		required: true,
		placeholder: 'e.g. {{ $json.fields }}',
		description: 'The correct (reviewed) field values, as a JSON object',
		displayOptions: { show: { ...show, recordFormat: ['extraction'] } },
	},
	optionsCollection(show, [
		{
			displayName: 'Batch Size',
			name: 'batchSize',
			type: 'number',
			typeOptions: { minValue: 1 },
			default: 500,
			description: 'The most examples sent in one request',
		},
	]),
];

function record(this: IExecuteFunctions, item: INodeExecutionData, itemIndex: number): IDataObject {
	if (this.getNodeParameter('recordFormat', itemIndex) === 'item') return item.json;
	const text = String(this.getNodeParameter('text', itemIndex));
	const fields = parseJson(this, this.getNodeParameter('fields', itemIndex), itemIndex, 'Fields');
	if (!text.trim()) {
		throw new NodeOperationError(this.getNode(), 'Text is empty', { itemIndex });
	}
	if (!isPlainObject(fields) || !Object.keys(fields).length) {
		throw new NodeOperationError(this.getNode(), 'Fields must be a non-empty JSON object', {
			itemIndex,
		});
	}
	return { text, fields };
}

/** Appends the input items as JSON lines, one request per dataset and batch; one output item each. */
export async function addExamples(
	this: IExecuteFunctions,
	items: INodeExecutionData[],
): Promise<INodeExecutionData[]> {
	const out: INodeExecutionData[] = [];
	const batches = new Map<string, Array<{ itemIndex: number; line: string }>>();
	for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
		try {
			const name = locatorValue(this.getNodeParameter('dataset', itemIndex));
			if (!name)
				throw new NodeOperationError(this.getNode(), 'Dataset Name is empty', { itemIndex });
			const line = JSON.stringify(record.call(this, items[itemIndex], itemIndex));
			if (!batches.has(name)) batches.set(name, []);
			batches.get(name)!.push({ itemIndex, line });
		} catch (error) {
			if (!this.continueOnFail()) throw withItemIndex(this, error, itemIndex);
			out.push({ json: { error: errorMessage(error) }, pairedItem: { item: itemIndex } });
		}
	}
	for (const [name, lines] of batches) {
		const first = lines[0].itemIndex;
		const options = this.getNodeParameter('options', first, {}) as IDataObject;
		const size = Math.max(1, Number(options.batchSize ?? 500));
		for (let start = 0; start < lines.length; start += size) {
			const chunk = lines.slice(start, start + size);
			const pairedItem: IPairedItemData[] = chunk.map(({ itemIndex }) => ({ item: itemIndex }));
			try {
				const response = await tunebridgeRequest.call(
					this,
					{
						method: 'POST',
						path: `/v1/datasets/${encodeURIComponent(name)}/examples`,
						headers: { 'Content-Type': 'application/jsonl' },
						body: chunk.map(({ line }) => line).join('\n') + '\n',
					},
					chunk[0].itemIndex,
				);
				out.push({ json: response as IDataObject, pairedItem });
			} catch (error) {
				if (!this.continueOnFail()) throw withItemIndex(this, error, chunk[0].itemIndex);
				out.push({ json: { error: errorMessage(error) }, pairedItem });
			}
		}
	}
	return out;
}
