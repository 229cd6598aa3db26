import type { IDataObject, IExecuteFunctions, INodeProperties } from 'n8n-workflow';
import { NodeOperationError, randomString } from 'n8n-workflow';
import { tunebridgeRequest } from '../../transport';
import { perItem } from '../../utils';
import { adapterOption, documentInput, modelOption, optionsCollection } from '../properties';

const show = { resource: ['document'], operation: ['process'] };

export const processDescription: INodeProperties[] = [
	...documentInput(show, {
		default: 'binary',
		binary: {
			name: 'File (Binary)',
			value: 'binary',
			description: 'A PDF, image (PNG, JPEG, TIFF), .txt or .md file in a binary property',
		},
		binaryHint: 'The name of the input binary field holding the file',
	}),
	optionsCollection(show, [
		adapterOption(),
		modelOption(),
		{
			displayName: 'Corrections Dataset',
			name: 'correctionsDataset',
			type: 'string',
			default: '',
			placeholder: 'corrections',
			description:
				"Where this document's review corrections go: name-type, e.g. corrections-receipt (default: the service's)",
		},
		{
			displayName: 'Document Type',
			name: 'documentType',
			type: 'options',
			options: [
				{ name: 'Bank Statement', value: 'bank_statement' },
				{ name: 'Detect', value: '' },
				{ name: 'Invoice', value: 'invoice' },
				{ name: 'KYC', value: 'kyc' },
				{ name: 'Receipt', value: 'receipt' },
			],
			default: '',
			description: 'Skip classification by naming the type',
		},
		{
			displayName: 'File Name (Text Input)',
			name: 'fileName',
			type: 'string',
			default: '',
			placeholder: 'document.txt',
			description: 'Kept with the record when the input is text (.txt or .md)',
		},
	]),
];

/** What the service accepts, by extension, and the extension for a MIME type. */
const EXTENSIONS = ['pdf', 'png', 'jpg', 'jpeg', 'tif', 'tiff', 'txt', 'md'];
const EXTENSION_BY_MIME: Record<string, string> = {
	'application/pdf': 'pdf',
	'image/png': 'png',
	'image/jpeg': 'jpg',
	'image/tiff': 'tif',
	'text/plain': 'txt',
	'text/markdown': 'md',
};

/** A quoted multipart header value: quotes and line breaks escaped as browsers do. */
function quoted(value: string): string {
	return `"${value.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A')}"`;
}

/** A multipart/form-data body: text fields, then the file as `file`. */
export function multipartBody(
	boundary: string,
	fields: Record<string, string>,
	file: { name: string; mimeType: string; content: Buffer },
): Buffer {
	const parts: Buffer[] = [];
	for (const [name, value] of Object.entries(fields)) {
		parts.push(
			Buffer.from(
				`--${boundary}\r\nContent-Disposition: form-data; name=${quoted(name)}\r\n\r\n${value}\r\n`,
				'utf8',
			),
		);
	}
	parts.push(
		Buffer.from(
			`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename=${quoted(file.name)}\r\n` +
				`Content-Type: ${file.mimeType}\r\n\r\n`,
			'utf8',
		),
		file.content,
		Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8'),
	);
	return Buffer.concat(parts);
}

function requestOptions(options: IDataObject): Record<string, string> {
	const fields: Record<string, string> = {};
	const names: Array<[string, string]> = [
		['documentType', 'type'],
		['adapter', 'adapter'],
		['model', 'model'],
		['correctionsDataset', 'corrections_dataset'],
	];
	for (const [option, field] of names) {
		const value = String(options[option] ?? '').trim();
		if (value) fields[field] = value;
	}
	return fields;
}

export const processDocument = perItem(async function (this: IExecuteFunctions, itemIndex: number) {
	const options = this.getNodeParameter('options', itemIndex, {}) as IDataObject;
	const fields = requestOptions(options);
	if (this.getNodeParameter('inputSource', itemIndex) === 'text') {
		const text = String(this.getNodeParameter('text', itemIndex));
		if (!text.trim()) {
			throw new NodeOperationError(this.getNode(), 'The document text is empty', { itemIndex });
		}
		const body: IDataObject = { text, ...fields };
		const fileName = String(options.fileName ?? '').trim();
		if (fileName) body.filename = fileName;
		return (await tunebridgeRequest.call(
			this,
			{ method: 'POST', path: '/v1/documents', body },
			itemIndex,
		)) as IDataObject;
	}
	const property = this.getNodeParameter('binaryPropertyName', itemIndex) as string;
	const binary = this.helpers.assertBinaryData(itemIndex, property);
	const mimeType = (binary.mimeType || 'application/octet-stream').split(';')[0].trim();
	const fromName = binary.fileName?.includes('.') ? binary.fileName.split('.').pop() : undefined;
	const extension = (
		fromName ??
		binary.fileExtension ??
		EXTENSION_BY_MIME[mimeType.toLowerCase()] ??
		''
	).toLowerCase();
	if (!EXTENSIONS.includes(extension)) {
		throw new NodeOperationError(
			this.getNode(),
			`Binary field "${property}" holds ${mimeType} (${binary.fileName ?? 'no file name'}), which the service does not read`,
			{ itemIndex, description: `Send one of: ${EXTENSIONS.join(', ')}` },
		);
	}
	// The service goes by the file name's extension: give one to a file that has none.
	const name = !binary.fileName
		? `document.${extension}`
		: fromName
			? binary.fileName
			: `${binary.fileName}.${extension}`;
	const content = await this.helpers.getBinaryDataBuffer(itemIndex, property);
	const boundary = `----tunebridge${randomString(24)}`;
	return (await tunebridgeRequest.call(
		this,
		{
			method: 'POST',
			path: '/v1/documents',
			headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` },
			body: multipartBody(boundary, fields, { name, mimeType, content }),
		},
		itemIndex,
	)) as IDataObject;
});
