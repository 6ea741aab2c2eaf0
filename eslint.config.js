// Lint: typescript-eslint plus the layer rule of docs/architecture.md "Layers", enforced with
// import-x/no-restricted-paths so a wrong import fails CI instead of review.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

const layers = {
  zones: [
    // broker/ knows no wire format and no concrete backend.
    { target: './broker', from: './adapters', message: 'broker/ must not import adapters' },
    { target: './broker', from: './bin', message: 'broker/ must not import bin' },
    {
      target: './broker',
      from: './storage',
      except: ['./types.ts'],
      message: 'broker/ imports storage interfaces only',
    },
    {
      target: './broker',
      from: './cluster',
      except: ['./types.ts'],
      message: 'broker/ imports cluster interfaces only',
    },
    // adapters import broker only.
    { target: './adapters', from: './storage', message: 'adapters import broker only' },
    { target: './adapters', from: './cluster', message: 'adapters import broker only' },
    { target: './adapters', from: './bin', message: 'adapters import broker only' },
    {
      target: './adapters',
      from: './metrics',
      message: 'adapters import broker only (MetricsReport)',
    },
    // metrics/ is a backend bin/ picks (Prometheus): it implements broker's Metrics and MetricsReport.
    { target: './broker', from: './metrics', message: 'broker/ must not import a metrics backend' },
    { target: './metrics', from: './adapters', message: 'metrics imports broker only' },
    { target: './metrics', from: './bin', message: 'metrics imports broker only' },
    // storage and cluster depend on nothing of ours.
    { target: './storage', from: './broker', message: 'storage depends on nothing of ours' },
    { target: './storage', from: './adapters', message: 'storage depends on nothing of ours' },
    { target: './cluster', from: './broker', message: 'cluster depends on nothing of ours' },
    { target: './cluster', from: './adapters', message: 'cluster depends on nothing of ours' },
  ],
};

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'data/**',
      'dist/**',
      '.test-artifacts/**',
      'scratch/**',
      'adapters/http/static/**',
    ],
  },
  ...tseslint.configs.recommended,
  {
    plugins: { 'import-x': importX },
    rules: {
      'import-x/no-restricted-paths': ['error', layers],
      'no-console': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  // The CLI, scripts, benchmarks and tests may print.
  {
    files: ['bin/**', 'scripts/**', 'bench/**', '**/test/**', 'conformance/**'],
    rules: { 'no-console': 'off' },
  },
  // Tests compose real backends the way bin/ does.
  { files: ['**/test/**'], rules: { 'import-x/no-restricted-paths': 'off' } },
);
