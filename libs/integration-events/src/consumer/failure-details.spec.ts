import { NonRetryableError } from '../errors/non-retryable.error';
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

  it("follows the error's cause chain, in the message and after the stack", () => {
    const root = new TypeError('customer 42 missing');
    const middle = new Error('lookup failed', { cause: root });
    const details = failureDetails(new NonRetryableError('refused', { cause: middle }));
    expect(details.message).toBe('refused; caused by Error: lookup failed; caused by TypeError: customer 42 missing');
    const stack = details.stack!.split('\n');
    expect(stack[0]).toBe('NonRetryableError: refused');
    expect(stack).toContain('Caused by: Error: lookup failed');
    expect(stack).toContain('Caused by: TypeError: customer 42 missing');
    expect(stack.indexOf('Caused by: Error: lookup failed')).toBeLessThan(stack.indexOf('Caused by: TypeError: customer 42 missing'));
  });

  it('keeps room for the causes when the error\'s own message or stack is long', () => {
    const details = failureDetails(new Error('x'.repeat(5_000), { cause: new TypeError('the root') }));
    expect(details.message).toHaveLength(1_000);
    expect(details.message.endsWith('; caused by TypeError: the root')).toBe(true);
    expect(details.stack!.length).toBeLessThanOrEqual(4_000);
    expect(details.stack).toContain('Caused by: TypeError: the root');
    // No message of its own: the causes alone, without a leading separator.
    expect(failureDetails(new Error('', { cause: new Error('inner') })).message).toBe('caused by Error: inner');
  });

  it('ends a cause chain at a value that is not an Error, a cycle, or a getter that throws', () => {
    expect(failureDetails(new Error('refused', { cause: { code: 'E42' } })).message).toBe('refused; caused by {"code":"E42"}');

    const a = new Error('a');
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(failureDetails(a).message).toBe('a; caused by Error: b');

    const hostileCause = new Error('inner');
    Object.defineProperty(hostileCause, 'message', {
      get() {
        throw new Error('no');
      },
    });
    expect(failureDetails(new Error('outer', { cause: hostileCause }))).toMatchObject({ name: 'Error', message: 'outer' });
  });

  it('describes values that are not Errors, even ones JSON cannot print', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(failureDetails('plain string')).toMatchObject({ name: 'NonError', message: 'non-Error thrown: plain string' });
    expect(failureDetails(cyclic).message).toBe('non-Error thrown: [object Object]');
    expect(failureDetails(undefined).message).toBe('non-Error thrown: undefined');
  });

  it('describes a revoked Proxy, whose every check (instanceof included) throws', () => {
    const { proxy, revoke } = Proxy.revocable(new Error('gone'), {});
    revoke();
    expect(() => proxy instanceof Error).toThrow(TypeError);
    expect(failureDetails(proxy)).toMatchObject({ name: 'NonError', message: 'non-Error thrown: [unprintable]' });
  });
});
