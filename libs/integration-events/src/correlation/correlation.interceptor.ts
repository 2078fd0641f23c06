import { randomUUID } from 'node:crypto';
import { type CallHandler, type ExecutionContext, Injectable, type NestInterceptor } from '@nestjs/common';
import { Observable } from 'rxjs';
import { isValidCorrelationId } from '../envelope/message-headers.factory';
import { CorrelationContext } from './correlation.context';

/** Header carrying the correlation id in and out of HTTP requests. */
export const CORRELATION_ID_HTTP_HEADER = 'x-correlation-id';
/** Header naming the request itself; its value becomes the causation id of what the request publishes. */
export const REQUEST_ID_HTTP_HEADER = 'x-request-id';

interface HttpRequestLike {
  headers?: Record<string, string | string[] | undefined>;
}
interface HttpResponseLike {
  setHeader?(name: string, value: string): void;
  header?(name: string, value: string): void;
}

/**
 * Gives every HTTP request a correlation id (the caller's `x-correlation-id`, or a new one) and a
 * request id (the caller's `x-request-id`, or a new one), so integration events published while
 * handling it carry them as correlation and causation ids. Echoes `x-correlation-id` in the response.
 * Registered globally by the module; other contexts (RPC, WebSocket) pass through untouched.
 */
@Injectable()
export class CorrelationInterceptor implements NestInterceptor {
  constructor(private readonly correlation: CorrelationContext) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http' || !this.correlation.available) return next.handle();
    const http = context.switchToHttp();
    const request = http.getRequest<HttpRequestLike>();
    const ids = {
      correlationId: header(request, CORRELATION_ID_HTTP_HEADER) ?? randomUUID(),
      causationId: header(request, REQUEST_ID_HTTP_HEADER) ?? randomUUID(),
    };
    const response = http.getResponse<HttpResponseLike>();
    (response.setHeader ?? response.header)?.call(response, CORRELATION_ID_HTTP_HEADER, ids.correlationId);
    if (this.correlation.set(ids)) return next.handle();
    // No CLS context yet (ClsModule's middleware not mounted): open one for the rest of the request.
    return new Observable((subscriber) =>
      this.correlation.run(ids, () => next.handle().subscribe(subscriber)),
    );
  }
}

function header(request: HttpRequestLike, name: string): string | undefined {
  const raw = request.headers?.[name];
  const value = Array.isArray(raw) ? raw[0] : raw;
  return isValidCorrelationId(value) ? value : undefined;
}
