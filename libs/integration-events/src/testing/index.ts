export { IntegrationEventsTestingModule, type IntegrationEventsTestingOptions } from './integration-events-testing.module';
export { IntegrationEventsTestKit } from './integration-events.test-kit';
export type { PublishedMessage } from './published-message';
export { DrainTimeoutError } from './drain-timeout.error';
export { TestKitRefusalError } from './test-kit-refusal.error';
export { InProcessBroker } from '../transport/in-process/in-process-broker';
