"""Errors the CRI services raise; the gRPC layer turns each into a status code with its message."""
from __future__ import annotations

import grpc


class CRIError(Exception):
    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CRIError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(CRIError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class AlreadyExists(CRIError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(CRIError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceeded(CRIError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(CRIError):
    code = grpc.StatusCode.UNIMPLEMENTED
