import { Code, ConnectError } from '@connectrpc/connect';
import { ArtifactError } from '@vyr/artifact';
import { ErrorInfoSchema } from '@vyr/proto';
import { RuntimeError } from '@vyr/runtime';
import { StateError } from '@vyr/state';
import { describe, expect, it } from 'vitest';
import { ApiError, ERROR_CODE_HEADER, toConnectError } from '../src/errors.js';

function mapped(err: unknown) {
  const ce = toConnectError(err);
  const info = ce.findDetails(ErrorInfoSchema)[0];
  return { code: ce.code, errorCode: info?.code, domain: info?.domain, header: ce.metadata.get(ERROR_CODE_HEADER) };
}

describe('error mapping at the API edge', () => {
  it.each([
    [new ArtifactError('UNTRUSTED_KEY', 'x'), Code.PermissionDenied, 'artifact'],
    [new ArtifactError('UNSIGNED', 'x'), Code.PermissionDenied, 'artifact'],
    [new ArtifactError('MALFORMED_LAYOUT', 'x'), Code.InvalidArgument, 'artifact'],
    [new ArtifactError('NOT_FOUND', 'x'), Code.NotFound, 'artifact'],
    [new RuntimeError('RESOURCE_EXHAUSTED', 'x'), Code.ResourceExhausted, 'runtime'],
    [new RuntimeError('NOT_FOUND', 'x'), Code.NotFound, 'runtime'],
    [new RuntimeError('INVALID_ARGUMENT', 'x'), Code.InvalidArgument, 'runtime'],
    [new RuntimeError('UNAVAILABLE', 'x'), Code.Unavailable, 'runtime'],
    [new RuntimeError('CLOSED', 'x'), Code.Unavailable, 'runtime'],
    [new StateError('PENDING_TIMEOUT', 'x'), Code.DeadlineExceeded, 'state'],
    [new StateError('BINDING_CONFLICT', 'x'), Code.FailedPrecondition, 'state'],
    [new StateError('UNDECLARED_SLOT', 'x'), Code.InvalidArgument, 'state'],
    [new StateError('NOT_FOUND', 'x'), Code.NotFound, 'state'],
    [new StateError('QUOTA_EXCEEDED', 'x'), Code.ResourceExhausted, 'state'],
    [new ApiError('TOO_LARGE', 'x'), Code.InvalidArgument, 'api'],
    [new ApiError('UNAUTHENTICATED', 'x'), Code.Unauthenticated, 'api'],
  ])('%s → Connect code %i with the package code in ErrorInfo and the vyr-error-code header', (err, code, domain) => {
    const m = mapped(err);
    expect(m).toEqual({ code, errorCode: err.code, domain, header: err.code });
  });

  it('reports the artifact code a runtime verification failure wraps', () => {
    const err = new RuntimeError('UNTRUSTED', 'artifact refused', { cause: new ArtifactError('UNTRUSTED_KEY', 'key') });
    expect(mapped(err)).toMatchObject({ code: Code.PermissionDenied, errorCode: 'UNTRUSTED_KEY', domain: 'artifact' });
  });

  it('maps anything unknown to internal, and leaves ConnectErrors alone', () => {
    expect(mapped(new Error('boom'))).toMatchObject({ code: Code.Internal, errorCode: 'INTERNAL' });
    expect(mapped('a string')).toMatchObject({ code: Code.Internal, errorCode: 'INTERNAL' });
    const ce = new ConnectError('x', Code.Aborted);
    expect(toConnectError(ce)).toBe(ce);
  });
});
