import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

// Globals (describe, it, expect, vi): the tests import nothing but the package's own code and
// n8n-workflow, because n8n's strict lint forbids other imports in any .ts file of the package.
export default defineConfig({
	// n8n loads community nodes with require(): test against the same CommonJS build of n8n-workflow.
	resolve: { alias: { 'n8n-workflow': require.resolve('n8n-workflow') } },
	test: { globals: true, include: ['test/**/*.test.ts'] },
});
