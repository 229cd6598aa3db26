import type { INodeProperties } from 'n8n-workflow';
import type { OperationExecutor } from '../../utils';
import { get, list, listDescription } from './list';
import { promote, promoteDescription, rollback } from './promote';

export const adapterOperations: Record<string, OperationExecutor> = {
	list,
	get,
	promote,
	rollback,
};

export const adapterDescription: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['adapter'] } },
		options: [
			{
				name: 'Get',
				value: 'get',
				action: 'Get an adapter version',
				description: 'One version, by name, name@version or name@alias',
			},
			{
				name: 'Get Many',
				value: 'list',
				action: 'Get many adapters',
				description: 'Adapters with their versions and aliases, one item each',
			},
			{
				name: 'Promote',
				value: 'promote',
				action: 'Point an alias at an adapter version',
				description: 'Set an alias (e.g. prod) to a version',
			},
			{
				name: 'Roll Back',
				value: 'rollback',
				action: 'Move an alias back to its previous version',
				description: 'Point an alias back at the version it named before its last change',
			},
		],
		default: 'list',
	},
	...listDescription,
	...promoteDescription,
];
