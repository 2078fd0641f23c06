export { IntegrationEventsHealthIndicator } from './integration-events.health-indicator';
