import { droppedHeadersWithProperties } from './copy-properties';

describe('droppedHeadersWithProperties', () => {
  it('adds the dropped properties to the list the message carried', () => {
    expect(droppedHeadersWithProperties('tenant,h1', ['timestamp', 'messageId'])).toBe('tenant,h1,timestamp (property),messageId (property)');
    expect(droppedHeadersWithProperties(undefined, ['timestamp'])).toBe('timestamp (property)');
  });

  it('leaves out a carried value that is not a list, whatever it is, instead of throwing', () => {
    // amqplib decodes a table header into an object: one whose toString is not a function, one without a prototype.
    for (const earlier of [{ toString: 'x' }, Object.create(null), ['a'], 7]) {
      expect(droppedHeadersWithProperties(earlier, ['timestamp'])).toBe('timestamp (property)');
    }
  });
});
