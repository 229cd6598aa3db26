import type { IHttpRequestOptions } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';
import { run } from './context';
import { axiosError, n8nHttpError } from './errors';

const BASE = 'http://tunebridge.test:8000';

describe('Training: Wait for Job', () => {
	const params = {
		resource: 'training',
		operation: 'waitForJob',
		jobId: 'j1',
		pollInterval: 10,
		timeoutMinutes: 30,
	};

	beforeEach(() => {
		vi.useFakeTimers();
	});
	afterEach(() => {
		vi.useRealTimers();
	});

	/** Answers GET /v1/jobs/{id} with `statuses` in turn, recording when each request came. */
	function jobAnswers(statuses: string[], extra: Record<string, unknown> = {}) {
		const times: number[] = [];
		let call = 0;
		const response = (options: IHttpRequestOptions) => {
			times.push(Date.now());
			const status = statuses[Math.min(call++, statuses.length - 1)];
			return {
				id: decodeURIComponent(String(options.url).split('/').pop() ?? ''),
				status,
				...extra,
			};
		};
		return { times, response };
	}

	it('polls every interval until the job succeeds, and outputs the job', async () => {
		const { times, response } = jobAnswers(['queued', 'running', 'succeeded']);
		const pending = run({ params, response });
		await vi.advanceTimersByTimeAsync(25_000);
		const { requests, output } = await pending;
		expect(requests).toHaveLength(3);
		expect(requests[0].options).toEqual({ method: 'GET', url: `${BASE}/v1/jobs/j1`, json: true });
		expect(times.map((t) => t - times[0])).toEqual([0, 10_000, 20_000]);
		expect(output).toEqual([{ json: { id: 'j1', status: 'succeeded' }, pairedItem: { item: 0 } }]);
	});

	it('asks once for a job that has already ended', async () => {
		const { response } = jobAnswers(['succeeded']);
		const { requests } = await run({ params, response });
		expect(requests).toHaveLength(1);
	});

	it('makes a failed job an error, with the job error as the message', async () => {
		const { response } = jobAnswers(['running', 'failed'], { error: 'CUDA out of memory' });
		const pending = run({ params, response });
		const caught = pending.catch((error: unknown) => error);
		await vi.advanceTimersByTimeAsync(10_000);
		const error = await caught;
		expect(error).toBeInstanceOf(NodeOperationError);
		expect(error).toMatchObject({
			message: 'Job j1 failed: CUDA out of memory',
			context: { itemIndex: 0 },
		});
	});

	it('with continueOnFail a failed or cancelled job becomes an error item', async () => {
		const failed = jobAnswers(['failed'], { error: 'boom' });
		const { output } = await run({
			params: { ...params, jobId: (i: number) => `j${i}` },
			items: [{ json: {} }, { json: {} }],
			continueOnFail: true,
			response: (options: IHttpRequestOptions) =>
				String(options.url).endsWith('/j0')
					? failed.response(options)
					: { id: 'j1', status: 'cancelled', error: null },
		});
		expect(output).toEqual([
			{ json: { error: 'Job j0 failed: boom' }, pairedItem: { item: 0 } },
			{ json: { error: 'Job j1 was cancelled' }, pairedItem: { item: 1 } },
		]);
	});

	it('outputs a failed job as it is when Error When the Job Fails is off', async () => {
		const { response } = jobAnswers(['failed'], { error: 'boom' });
		const { output } = await run({ params: { ...params, errorOnFailure: false }, response });
		expect(output[0].json).toEqual({ id: 'j1', status: 'failed', error: 'boom' });
	});

	it('gives up after the timeout, polling no later than it', async () => {
		const { times, response } = jobAnswers(['running']);
		const pending = run({ params: { ...params, pollInterval: 40, timeoutMinutes: 1 }, response });
		const caught = pending.catch((error: unknown) => error);
		await vi.advanceTimersByTimeAsync(61_000);
		const error = await caught;
		expect(error).toMatchObject({ message: 'Job j1 is still running after 1 minutes' });
		expect(times.map((t) => t - times[0])).toEqual([0, 40_000, 60_000]);
	});

	it('stops waiting at once when the execution is cancelled, and polls no more', async () => {
		const { times, response } = jobAnswers(['running']);
		const controller = new AbortController();
		const pending = run({ params, response, signal: controller.signal });
		const caught = pending.catch((error: unknown) => error);
		await vi.advanceTimersByTimeAsync(12_000);
		controller.abort();
		await vi.advanceTimersByTimeAsync(0);
		const error = await caught;
		expect(error).toMatchObject({ message: 'The execution was cancelled' });
		expect(times.map((t) => t - times[0])).toEqual([0, 10_000]);
		await vi.advanceTimersByTimeAsync(60_000);
		expect(times).toHaveLength(2);
	});

	it('does not poll again when the execution was cancelled before the first wait', async () => {
		const { times, response } = jobAnswers(['running']);
		const controller = new AbortController();
		controller.abort();
		await expect(run({ params, response, signal: controller.signal })).rejects.toMatchObject({
			message: 'The execution was cancelled',
		});
		expect(times).toHaveLength(1);
	});

	it("maps the service's 404 to a NodeApiError", async () => {
		await expect(
			run({
				params,
				response: () => {
					throw n8nHttpError(404, { error: 'job j1 not found' });
				},
			}),
		).rejects.toMatchObject({ message: 'job j1 not found', httpCode: '404' });
	});
});

describe('Evaluation: Run', () => {
	const base = {
		resource: 'evaluation',
		operation: 'run',
		dataset: ' receipts-eval ',
		adapters: 'receipts@prod, receipts@3 ,',
		includeBase: true,
		promote: false,
	};

	it('POSTs an eval job with the adapters and options', async () => {
		const { requests, output } = await run({
			params: {
				...base,
				options: {
					model: 'qwen',
					exampleLimit: 20,
					batchSize: 4,
					maxNewTokens: 128,
					callbackUrl: 'http://n8n/webhook-waiting/7',
				},
			},
			response: { id: 'e1', kind: 'eval', status: 'queued' },
		});
		expect(requests[0]).toEqual({
			credentialType: 'tunebridgeApi',
			options: {
				method: 'POST',
				url: `${BASE}/v1/jobs`,
				json: true,
				body: {
					kind: 'eval',
					dataset: 'receipts-eval',
					hyperparameters: {
						adapters: ['receipts@prod', 'receipts@3'],
						include_base: true,
						model: 'qwen',
						limit: 20,
						batch_size: 4,
						max_new_tokens: 128,
					},
					callback_url: 'http://n8n/webhook-waiting/7',
				},
			},
		});
		expect(output).toEqual([
			{ json: { id: 'e1', kind: 'eval', status: 'queued' }, pairedItem: { item: 0 } },
		]);
	});

	it('sends the promotion policy for one adapter', async () => {
		const { requests } = await run({
			params: {
				...base,
				adapters: 'receipts@4',
				includeBase: false,
				promote: true,
				promoteAlias: 'prod',
				minGain: 0.01,
				maxFieldDrop: 0.02,
			},
			response: {},
		});
		expect(requests[0].options.body).toEqual({
			kind: 'eval',
			dataset: 'receipts-eval',
			hyperparameters: {
				adapters: ['receipts@4'],
				include_base: false,
				promote: { alias: 'prod', min_gain: 0.01, max_field_drop: 0.02 },
			},
		});
	});

	it('refuses what the service would refuse, before any request', async () => {
		const bad = [
			{ ...base, dataset: ' ' },
			{ ...base, adapters: '', includeBase: false },
			{ ...base, promote: true, promoteAlias: 'prod', minGain: 0, maxFieldDrop: 0.05 },
		];
		const messages = [];
		for (const params of bad) {
			const { requests, output } = await run({ params, continueOnFail: true, response: {} });
			expect(requests).toHaveLength(0);
			messages.push(output[0].json.error);
		}
		expect(messages).toEqual([
			'Dataset Name is empty',
			'Nothing to evaluate: give adapters, or include the base model',
			'Promote If Better needs exactly one adapter, got 2',
		]);
	});

	it("maps the service's 404 and 422 with their details", async () => {
		await expect(
			run({
				params: base,
				response: () => {
					throw n8nHttpError(404, { error: "dataset 'receipts-eval' not found" });
				},
			}),
		).rejects.toMatchObject({ message: "dataset 'receipts-eval' not found", httpCode: '404' });
		await expect(
			run({
				params: base,
				response: () => {
					throw n8nHttpError(422, {
						error: 'invalid request',
						details: [{ where: 'body.dataset', problem: 'Field required' }],
					});
				},
			}),
		).rejects.toMatchObject({
			message: 'invalid request',
			description: 'body.dataset: Field required',
			httpCode: '422',
		});
	});
});

describe('Evaluation: Get Report', () => {
	const params = { resource: 'evaluation', operation: 'getReport', jobId: 'e 1' };
	const scores = { models: { base: { micro: { f1: 0.5 } } } };
	const answer = (options: IHttpRequestOptions) =>
		String(options.url).endsWith('report.md') ? '# Evaluation\n\n| model | F1 |' : scores;

	it('GETs report.md as text and eval.json as JSON into one item', async () => {
		const { requests, output } = await run({ params, response: answer });
		expect(requests.map((r) => r.options)).toEqual([
			{
				method: 'GET',
				url: `${BASE}/v1/jobs/e%201/artifacts/report.md`,
				json: false,
				encoding: 'text',
			},
			{ method: 'GET', url: `${BASE}/v1/jobs/e%201/artifacts/eval.json`, json: true },
		]);
		expect(output).toEqual([
			{
				json: { job_id: 'e 1', report: '# Evaluation\n\n| model | F1 |', eval: scores },
				pairedItem: { item: 0 },
			},
		]);
	});

	it('fetches only what Include names', async () => {
		const { requests, output } = await run({
			params: { ...params, include: ['eval'] },
			response: answer,
		});
		expect(requests).toHaveLength(1);
		expect(output[0].json).toEqual({ job_id: 'e 1', eval: scores });
	});

	it('maps a missing artifact (the job has not written it yet), whose body came back as text', async () => {
		const response = () => {
			throw axiosError(404, '{"error": "job e 1 has no report.md (yet)"}');
		};
		await expect(run({ params, response })).rejects.toMatchObject({
			message: 'job e 1 has no report.md (yet)',
			httpCode: '404',
		});
		const { output } = await run({ params, response, continueOnFail: true });
		expect(output).toEqual([
			{ json: { error: 'job e 1 has no report.md (yet)' }, pairedItem: { item: 0 } },
		]);
	});
});
