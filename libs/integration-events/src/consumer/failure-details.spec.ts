import { failureDetails } from './failure-details';

describe('failureDetails', () => {
  it('describes an ordinary Error by name, message and trimmed stack', () => {
    const details = failureDetails(new TypeError('card declined'));
    expect(details).toMatchObject({ name: 'TypeError', message: 'card declined' });
    expect(details.stack?.split('\n')[0]).toBe('TypeError: card declined');
  });

  it('never throws on an Error whose message or stack is not a string', () => {
    // As a subclass that redeclares `message` as a class field leaves it (undefined).
    const noMessage = new Error('x');
    Object.defineProperty(noMessage, 'message', { value: undefined });
    Object.defineProperty(noMessage, 'stack', { value: 42 });
    expect(failureDetails(noMessage)).toMatchObject({ name: 'Error', message: '', stack: '42' });

    const objectMessage = new Error('x');
    Object.defineProperty(objectMessage, 'message', { value: { reason: 'limit' } });
    Object.defineProperty(objectMessage, 'name', { value: 7 });
    expect(failureDetails(objectMessage)).toMatchObject({ name: '7', message: '{"reason":"limit"}' });
  });

  it('never throws on an Error whose properties are getters that throw', () => {
    const hostile = new Error('x');
    Object.defineProperty(hostile, 'message', {
      get() {
        throw new Error('no');
      },
    });
    expect(failureDetails(hostile)).toMatchObject({ name: 'NonError' });
    expect(failureDetails(hostile).message).toMatch(/^non-Error thrown: /);
  });

  it('describes values that are not Errors, even ones JSON cannot print', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(failureDetails('plain string')).toMatchObject({ name: 'NonError', message: 'non-Error thrown: plain string' });
    expect(failureDetails(cyclic).message).toBe('non-Error thrown: [object Object]');
    expect(failureDetails(undefined).message).toBe('non-Error thrown: undefined');
  });
});
