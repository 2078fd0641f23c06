/** What the transport must do with a message once the dispatcher is done with it. */
export type Disposition =
  /** Handled: acknowledge. */
  | { readonly action: 'ack' }
  /** Cannot be handled, ever (poison input): take it off the queue without calling the handler again. */
  | { readonly action: 'reject'; readonly reason: string; readonly poison: true }
  /** The handler failed this attempt. */
  | { readonly action: 'reject'; readonly reason: string; readonly poison: false; readonly error: unknown };
