"""The one exception type a request handler raises for a client mistake.

Every problem with a request (its body, its tensors, its images, its size or its pace)
becomes a :class:`RequestError` carrying the HTTP status to answer with, so the app can
turn all of them into the v2 protocol's ``{"error": "..."}`` body in one handler and a
bug in our own code still surfaces as a 500 rather than being mislabelled a 4xx.
"""

from __future__ import annotations

from ..errors import UserError


class RequestError(UserError):
    """A request the server refuses; ``status`` is the 4xx code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        if not 400 <= status < 500:
            raise ValueError(f"RequestError status must be a 4xx code, got {status}")
        super().__init__(message)
        self.status = status
