import { IntegrationEventsError } from '../errors/integration-events.error';

/**
 * The test kit refused a call that would test nothing (a delivery no handler of the application takes),
 * or found a published event its consumers would refuse as poison: a test asserting on it would
 * otherwise pass.
 */
export class TestKitRefusalError extends IntegrationEventsError {}
