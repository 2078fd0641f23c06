import type { DiscoveryService } from '@nestjs/core';

type ProviderWrapper = ReturnType<DiscoveryService['getProviders']>[number];

/**
 * The provider's class: its instance's constructor when there is an instance (a factory provider's
 * metatype is the factory), else its metatype — what Nest's own discovery reads metadata from. Nothing
 * for values without a class (`useValue: null`), which cannot be handlers or converters.
 */
export function providerClass(wrapper: ProviderWrapper): Function | undefined {
  const instance = wrapper.instance as { constructor?: unknown } | null | undefined;
  const cls = (instance !== null && instance !== undefined ? instance.constructor : undefined) ?? wrapper.metatype;
  return typeof cls === 'function' ? cls : undefined;
}
