import { TunebridgeApi } from '../credentials/TunebridgeApi.credentials';

describe('TunebridgeApi credential', () => {
	const credential = new TunebridgeApi();

	it('sends the key as a Bearer token', () => {
		expect(credential.authenticate).toEqual({
			type: 'generic',
			properties: { headers: { Authorization: '=Bearer {{$credentials.apiKey}}' } },
		});
	});

	it('tests with GET /v1/models on the base URL', () => {
		expect(credential.test.request).toMatchObject({ url: '/v1/models', method: 'GET' });
		expect(credential.test.request.baseURL).toContain('$credentials.baseUrl');
	});

	it('defaults to the local service and hides the key', () => {
		const [baseUrl, apiKey] = credential.properties;
		expect(baseUrl).toMatchObject({ name: 'baseUrl', default: 'http://127.0.0.1:8000' });
		expect(apiKey).toMatchObject({ name: 'apiKey', typeOptions: { password: true } });
	});
});
