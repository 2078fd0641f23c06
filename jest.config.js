/**
 * One Jest run for the three test tiers: unit specs beside the library code, integration specs in
 * test/ (real PostgreSQL and RabbitMQ), and the example apps' end-to-end spec.
 *
 * NestJS 12 ships ESM only; @swc/jest compiles it (and our TypeScript) to CommonJS, so node_modules/@nestjs
 * is transformed too. The library is imported by its package name, mapped to its sources.
 */
const swc = {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2022',
    keepClassNames: true,
  },
  module: { type: 'commonjs' },
  sourceMaps: 'inline',
};

module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/libs', '<rootDir>/test', '<rootDir>/apps'],
  testMatch: ['**/*.spec.ts'],
  transform: { '^.+\\.(t|j)sx?$': ['@swc/jest', swc] },
  transformIgnorePatterns: ['/node_modules/(?!@nestjs/)'],
  moduleNameMapper: {
    '^nestjs-integration-events$': '<rootDir>/libs/integration-events/src/index.ts',
    '^nestjs-integration-events/testing$': '<rootDir>/libs/integration-events/src/testing/index.ts',
    '^nestjs-integration-events/terminus$': '<rootDir>/libs/integration-events/src/terminus/index.ts',
  },
  modulePathIgnorePatterns: ['<rootDir>/libs/integration-events/dist', '<rootDir>/dist'],
  testTimeout: 60_000,
  maxWorkers: 2,
};
