/**
 * Pause before a message is given back to its queue after a failure of the library's own (its retry or
 * dead-letter copy could not be placed, or processing it failed outside the handler), on either
 * transport: given back at once, it would come straight back and fail again, in a hot loop.
 */
export const RETURN_TO_QUEUE_PAUSE_MS = 1_000;
