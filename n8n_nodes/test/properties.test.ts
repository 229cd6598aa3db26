import type { INodeProperties } from 'n8n-workflow';
import { Tunebridge } from '../nodes/Tunebridge/Tunebridge.node';
import { adapterOption, documentInput } from '../nodes/Tunebridge/resources/properties';

const properties = new Tunebridge().description.properties;

/** Whether a property's `@version` condition (if any) admits `version`: `[1]` or `[{ _cnd: { gte: 2 } }]`. */
function forVersion(show: Record<string, unknown>, version: number): boolean {
	const conditions = show['@version'] as Array<number | { _cnd: { gte: number } }> | undefined;
	if (!conditions) return true;
	return conditions.some((c) => (typeof c === 'number' ? c === version : version >= c._cnd.gte));
}

/** The properties an operation shows in a node version (whatever their other conditions), in form order. */
function shownFor(resource: string, operation: string, version = 1): INodeProperties[] {
	return properties.filter(({ displayOptions }) => {
		const show = displayOptions?.show;
		if (!show) return false;
		return (
			(show.resource ?? []).includes(resource) &&
			(show.operation ?? [operation]).includes(operation) &&
			forVersion(show, version)
		);
	});
}

/** `name`, or `name{option,...}` for a collection. */
function described(property: INodeProperties): string {
	if (property.type !== 'collection') return property.name;
	const options = (property.options ?? []) as INodeProperties[];
	return `${property.name}{${options.map(({ name }) => name).join(',')}}`;
}

describe('shared properties', () => {
	const show = { resource: ['document'], operation: ['extract'] };
	const binary = { name: 'File (Binary)', value: 'binary' as const, description: 'A file' };

	it('lists the default document source first, and its property first', () => {
		for (const [source, order] of [
			['text', ['text', 'binary']],
			['binary', ['binary', 'text']],
		] as const) {
			const [input, ...fields] = documentInput(show, {
				default: source,
				binary,
				binaryHint: 'The name of the input binary field holding the file',
			});
			expect(input).toMatchObject({ name: 'inputSource', type: 'options', default: source });
			expect(input.options?.map((option) => ('value' in option ? option.value : ''))).toEqual(
				order,
			);
			expect(fields.map(({ name }) => name)).toEqual(
				order.map((value) => (value === 'text' ? 'text' : 'binaryPropertyName')),
			);
			expect(fields.map(({ displayOptions }) => displayOptions?.show)).toEqual(
				order.map((value) => ({ ...show, inputSource: [value] })),
			);
		}
	});

	it('builds a fresh property on every call', () => {
		const first = { ...adapterOption(), displayOptions: { show } };
		first.default = 'changed';
		expect(adapterOption()).not.toHaveProperty('displayOptions');
		expect(adapterOption().default).toBe('');
	});
});

describe('node description', () => {
	// The exported workflows set these parameters by name: renaming one breaks them.
	it('keeps every operation’s parameter names', () => {
		const operations: Record<string, string[]> = {
			'document.extract': [
				'operation',
				'inputSource',
				'text',
				'binaryPropertyName',
				'schemaSource',
				'preset',
				'fieldNames',
				'jsonSchema',
				'adapter',
				'options{model,rank,constrained,maxTokens}',
			],
			'document.process': [
				'operation',
				'inputSource',
				'binaryPropertyName',
				'text',
				'options{adapter,model,correctionsDataset,documentType,fileName}',
			],
			'document.review': [
				'operation',
				'documentId',
				'corrections',
				'decision',
				'note',
				'reviewer',
				'options{correctionsDataset}',
			],
			'document.get': ['operation', 'documentId'],
			'dataset.addExamples': [
				'operation',
				'dataset',
				'recordFormat',
				'text',
				'fields',
				'options{batchSize}',
			],
			'training.startJob': [
				'operation',
				'kind',
				'dataset',
				'adapterName',
				'hyperparameters',
				'options{callbackUrl,promote}',
			],
			'training.getJob': ['operation', 'jobId'],
			'training.getEvents': ['operation', 'jobId', 'after'],
			'training.waitForJob': [
				'operation',
				'jobId',
				'pollInterval',
				'timeoutMinutes',
				'errorOnFailure',
			],
			'evaluation.run': [
				'operation',
				'dataset',
				'adapters',
				'includeBase',
				'promote',
				'promoteAlias',
				'minGain',
				'maxFieldDrop',
				'options{model,batchSize,callbackUrl,exampleLimit,maxNewTokens}',
			],
			'evaluation.getReport': ['operation', 'jobId', 'include'],
			'adapter.get': ['operation', 'ref'],
			'adapter.promote': ['operation', 'name', 'alias', 'version', 'reason'],
			'adapter.rollback': ['operation', 'name', 'alias'],
			'chat.complete': [
				'operation',
				'model',
				'messages',
				'responseFormat',
				'jsonSchema',
				'options{maxTokens,seed,temperature}',
			],
		};
		for (const [key, names] of Object.entries(operations)) {
			const [resource, operation] = key.split('.');
			expect(shownFor(resource, operation).map(described), key).toEqual(names);
		}
	});

	it('version 2 has the same parameter names, adapters and datasets as resource locators', () => {
		const description = new Tunebridge().description;
		expect(description.version).toEqual([1, 2]);
		expect(description.defaultVersion).toBe(2);
		for (const [resource, operation] of [
			['document', 'extract'],
			['dataset', 'addExamples'],
			['training', 'startJob'],
			['evaluation', 'run'],
		]) {
			const v1 = shownFor(resource, operation, 1);
			const v2 = shownFor(resource, operation, 2);
			expect(v2.map(described)).toEqual(v1.map(described));
			for (const property of v2.filter(({ name }) => ['adapter', 'dataset'].includes(name))) {
				expect(property.type, `${resource}.${operation}.${property.name}`).toBe('resourceLocator');
				const list = property.modes?.find(({ name }) => name === 'list');
				expect(list?.typeOptions?.searchListMethod).toBe(
					property.name === 'adapter' ? 'searchAdapters' : 'searchDatasets',
				);
			}
			for (const property of v1.filter(({ name }) => ['adapter', 'dataset'].includes(name))) {
				expect(property.type).toBe('string');
			}
		}
	});

	// What n8n's lint checks in a literal collection, which it cannot see through optionsCollection().
	it('sorts every collection’s options by display name', () => {
		const collections = properties.filter(({ type }) => type === 'collection');
		expect(collections.length).toBeGreaterThan(0);
		for (const { displayOptions, options } of collections) {
			const names = ((options ?? []) as INodeProperties[]).map(({ displayName }) => displayName);
			const sorted = [...names].sort((a, b) => a.localeCompare(b));
			expect(names, JSON.stringify(displayOptions?.show)).toEqual(sorted);
		}
	});
});
