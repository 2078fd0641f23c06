/** A date and time as the contract's headers carry them (`ie-occurred-at`, the failure times): ISO 8601, with its offset. */
export const ISO_8601_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
