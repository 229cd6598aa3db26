import type {
	IAuthenticateGeneric,
	Icon,
	ICredentialTestRequest,
	ICredentialType,
	INodeProperties,
} from 'n8n-workflow';

export class TunebridgeApi implements ICredentialType {
	name = 'tunebridgeApi';

	displayName = 'Tunebridge API';

	icon: Icon = {
		light: 'file:../nodes/Tunebridge/tunebridge.svg',
		dark: 'file:../nodes/Tunebridge/tunebridge.dark.svg',
	};

	documentationUrl = 'https://www.npmjs.com/package/n8n-nodes-tunebridge';

	properties: INodeProperties[] = [
		{
			displayName: 'Base URL',
			name: 'baseUrl',
			type: 'string',
			default: 'http://127.0.0.1:8000',
			placeholder: 'http://127.0.0.1:8000',
			description: 'Where the tunebridge service listens (no trailing /v1)',
		},
		{
			displayName: 'API Key',
			name: 'apiKey',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			description: "One of the service's TUNEBRIDGE_API_KEYS",
		},
	];

	authenticate: IAuthenticateGeneric = {
		type: 'generic',
		properties: {
			headers: {
				Authorization: '=Bearer {{$credentials.apiKey}}',
			},
		},
	};

	test: ICredentialTestRequest = {
		request: {
			baseURL: '={{$credentials.baseUrl.replace(/\\/+$/, "")}}',
			url: '/v1/models',
			method: 'GET',
		},
	};
}
