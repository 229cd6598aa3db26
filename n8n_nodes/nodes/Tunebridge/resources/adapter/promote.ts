import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem, segment } from '../../utils';

const showBoth = { resource: ['adapter'], operation: ['promote', 'rollback'] };

export const promoteDescription: INodeProperties[] = [
	{
		displayName: 'Adapter Name',
		name: 'name',
		type: 'string',
		default: '',
		required: true,
		placeholder: 'receipts',
		displayOptions: { show: showBoth },
	},
	{
		displayName: 'Alias',
		name: 'alias',
		type: 'string',
		default: 'prod',
		required: true,
		description: 'The alias clients use, e.g. receipts@prod',
		displayOptions: { show: showBoth },
	},
	{
		displayName: 'Version',
		name: 'version',
		type: 'number',
		typeOptions: { minValue: 1 },
		default: 1,
		required: true,
		description: 'The version the alias should point at',
		displayOptions: { show: { resource: ['adapter'], operation: ['promote'] } },
	},
	{
		displayName: 'Reason',
		name: 'reason',
		type: 'string',
		default: '',
		description: 'Why (kept in the alias history)',
		displayOptions: { show: { resource: ['adapter'], operation: ['promote'] } },
	},
];

function aliasPath(this: IExecuteFunctions, itemIndex: number): string {
	const name = segment(this, 'name', itemIndex, 'Adapter Name');
	const alias = segment(this, 'alias', itemIndex, 'Alias');
	return `/v1/adapters/${name}/aliases/${alias}`;
}

/** Point the alias at a version (PUT); the response is the alias's new state. */
export const promote = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const version = Number(this.getNodeParameter('version', itemIndex));
	if (!Number.isInteger(version) || version < 1) {
		throw new NodeOperationError(this.getNode(), 'Version must be a whole number from 1', {
			itemIndex,
		});
	}
	const body: IDataObject = { version };
	const reason = String(this.getNodeParameter('reason', itemIndex, '')).trim();
	if (reason) body.reason = reason;
	return (await tunebridgeRequest.call(
		this,
		{ method: 'PUT', path: aliasPath.call(this, itemIndex), body },
		itemIndex,
	)) as IDataObject;
});

/** Move the alias back to the version it had before. */
export const rollback = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	return (await tunebridgeRequest.call(
		this,
		{ method: 'POST', path: `${aliasPath.call(this, itemIndex)}/rollback` },
		itemIndex,
	)) as IDataObject;
});
