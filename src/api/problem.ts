/**
 * Errors at the API edge: `application/problem+json` (RFC 9457) with a stable `code` scripts can rely on.
 */
import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, Response } from 'express';
import type { Logger } from 'winston';

/** One problem with one part of a request. */
export interface FieldProblem {
  /** JSON pointer into the request body or the query (`/role`, `?limit`). */
  path: string;
  message: string;
}

/** An error that becomes a problem document. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly errors: FieldProblem[] | undefined;
  constructor(status: number, code: string, message: string, errors?: FieldProblem[]) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.errors = errors;
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Writes a problem document. */
export function sendProblem(res: Response, status: number, code: string, detail: string, errors?: FieldProblem[]): void {
  res
    .status(status)
    .type('application/problem+json')
    .send(JSON.stringify({ type: `https://settle.dev/problems/${code}`, title: TITLES[status] ?? 'Error', status, code, detail, ...(errors ? { errors } : {}) }));
}

/** The last middleware: every error becomes a problem document; unexpected ones are logged by id only. */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    if (res.headersSent) return;
    if (error instanceof ApiError) {
      sendProblem(res, error.status, error.code, error.message, error.errors);
      return;
    }
    // body-parser and express raise errors carrying a status and a type.
    const httpError = error as { status?: number; type?: string; message?: string };
    if (httpError.type === 'entity.parse.failed') {
      sendProblem(res, 400, 'invalid_json', 'The request body is not valid JSON.');
      return;
    }
    if (httpError.type === 'entity.too.large') {
      sendProblem(res, 413, 'payload_too_large', 'The request body is larger than the API accepts.');
      return;
    }
    if (typeof httpError.status === 'number' && httpError.status >= 400 && httpError.status < 500) {
      sendProblem(res, httpError.status, 'invalid_request', httpError.message ?? 'The request is invalid.');
      return;
    }
    // An unexpected error's message may quote the data it failed on (a database error echoes the row):
    // log its kind, code and where it happened, never its message.
    const errorId = randomUUID();
    const failure = error as Error & { code?: string };
    logger.error('request failed', {
      errorId,
      method: req.method,
      route: req.route?.path,
      type: failure?.constructor?.name,
      code: failure?.code,
      frames: failure?.stack?.split('\n').slice(1, 8).map((frame) => frame.trim()),
    });
    sendProblem(res, 500, 'internal_error', `Something went wrong on our side. It has been logged as ${errorId}.`);
  };
}
