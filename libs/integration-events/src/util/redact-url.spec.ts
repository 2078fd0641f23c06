import { redactSecrets, redactUrl } from './redact-url';

describe('redactUrl', () => {
  describe('replaces the password with ***', () => {
    it.each([
      ['amqp://guest:s3cret@localhost:5672', 'amqp://guest:***@localhost:5672'],
      ['amqps://svc:s3cret@rabbit.internal:5671/prod?heartbeat=5', 'amqps://svc:***@rabbit.internal:5671/prod?heartbeat=5'],
      ['amqp://guest:s3cret@localhost:5672/%2F', 'amqp://guest:***@localhost:5672/%2F'],
      ['amqp://guest:p%40ss%3Aword@localhost', 'amqp://guest:***@localhost'],
      ['amqp://guest:s3cret@[::1]:5672', 'amqp://guest:***@[::1]:5672'],
      ['http://guest:s3cret@localhost', 'http://guest:***@localhost/'],
    ])('%s', (url, redacted) => {
      expect(redactUrl(url)).toBe(redacted);
    });
  });

  it.each([
    ['postgres://app@db:5432/orders?password=s3cr3t', 'postgres://app@db:5432/orders?password=***'],
    ['postgres://app@db/orders?sslmode=require&sslpassword=k3y&application_name=x', 'postgres://app@db/orders?sslmode=require&sslpassword=***&application_name=x'],
    ['postgres://app:pw@db/orders?PASSWORD=s3cr3t', 'postgres://app:***@db/orders?PASSWORD=***'],
  ])('replaces a password given as a query parameter (libpq): %s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
  });

  it('replaces a query-parameter password in text that does not parse as a URL', () => {
    expect(redactUrl('db:5432/orders?password=s3cr3t&x=1')).toBe('db:5432/orders?password=***&x=1');
  });

  it('keeps the user name, host, port, vhost and query', () => {
    expect(redactUrl('amqp://ordering:s3cret@rabbit:5673/vh?frameMax=0&channelMax=10')).toBe(
      'amqp://ordering:***@rabbit:5673/vh?frameMax=0&channelMax=10',
    );
  });

  it('leaves a URL without a password unchanged', () => {
    expect(redactUrl('amqp://localhost:5672')).toBe('amqp://localhost:5672');
    expect(redactUrl('amqp://guest@localhost:5672/vh')).toBe('amqp://guest@localhost:5672/vh');
  });

  it('keeps the shape of an unparsable URL but not its password', () => {
    expect(redactUrl('amqp://guest:s3cret@localhost:99999')).toBe('amqp://guest:***@localhost:99999');
  });

  it('replaces a string that does not parse as a URL, and has no user:password@ part, as a whole', () => {
    expect(redactUrl('s3cret')).toBe('<unparsable url>');
    expect(redactUrl('')).toBe('<unparsable url>');
  });

  it('does not leak the password of a URL written without its scheme', () => {
    // "guest:s3cret@localhost:5672" parses as scheme "guest:" with the opaque path "s3cret@localhost:5672".
    expect(redactUrl('guest:s3cret@localhost:5672')).not.toContain('s3cret');
  });
});

describe('redactSecrets', () => {
  const url = 'amqp://guest:s3cret@localhost:5672';

  it('removes every occurrence of the password from a message', () => {
    expect(redactSecrets('login s3cret refused for amqp://guest:s3cret@localhost:5672 (s3cret)', url)).toBe(
      'login *** refused for amqp://guest:***@localhost:5672 (***)',
    );
  });

  it('removes the password both decoded and percent-encoded', () => {
    const encodedUrl = 'amqp://guest:p%40ss%20w@localhost';
    expect(redactSecrets('password "p@ss w" refused; url amqp://guest:p%40ss%20w@localhost', encodedUrl)).toBe(
      'password "***" refused; url amqp://guest:***@localhost',
    );
  });

  it('removes the password as written in the URL, whatever its percent-encoding', () => {
    // "%21" is "!", which encodeURIComponent leaves alone, so neither of the two forms tried matches.
    const message = redactSecrets('cannot connect to amqp://guest:p%21ss@localhost', 'amqp://guest:p%21ss@localhost');
    expect(message).not.toContain('p%21ss');
    expect(message).toBe('cannot connect to amqp://guest:***@localhost');
  });

  it('removes a password holding a "%" that is not a percent-escape', () => {
    // The URL parser keeps "50%off" as it is, and decodeURIComponent("50%off") throws.
    const message = redactSecrets('cannot connect to amqp://guest:50%off@localhost', 'amqp://guest:50%off@localhost');
    expect(message).not.toContain('50%off');
    expect(message).toBe('cannot connect to amqp://guest:***@localhost');
  });

  it('removes a password given as a query parameter, decoded and as written', () => {
    const queryUrl = 'postgres://app@db:5432/orders?password=p%40ss&sslpassword=k3y';
    expect(redactSecrets('auth failed for "p@ss" at postgres://app@db:5432/orders?password=p%40ss&sslpassword=k3y (k3y)', queryUrl)).toBe(
      'auth failed for "***" at postgres://app@db:5432/orders?password=***&sslpassword=*** (***)',
    );
  });

  it.each(['a+b', 'p%21ss', 'P%2fss'])('removes a query-parameter password as written in the URL: %s', (written) => {
    const queryUrl = `postgres://app@db/orders?password=${written}`;
    expect(redactSecrets(`cannot connect to ${queryUrl}`, queryUrl)).toBe('cannot connect to postgres://app@db/orders?password=***');
  });

  it('returns the message unchanged when the URL has no password', () => {
    expect(redactSecrets('connect ECONNREFUSED 127.0.0.1:5672', 'amqp://guest@localhost')).toBe(
      'connect ECONNREFUSED 127.0.0.1:5672',
    );
  });

  it('returns the message unchanged when the URL does not parse', () => {
    expect(redactSecrets('connect ECONNREFUSED', 'not a url')).toBe('connect ECONNREFUSED');
  });

  it('returns a message without the password unchanged', () => {
    expect(redactSecrets('ACCESS_REFUSED - Login was refused', url)).toBe('ACCESS_REFUSED - Login was refused');
  });
});
