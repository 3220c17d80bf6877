"""How a workflow step failed, read the same way by every workflow that runs steps within the failure rule
(docs/failure-rules.md): the order's and the dispute case's."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

# How a step fails: a normal activity raises ActivityError (its cause says why); a local activity raises the
# failure itself (an ApplicationError, or a TimeoutError past its schedule-to-close bound).
StepFailed = (ActivityError, ApplicationError, TemporalTimeoutError)


def cause_of(error: BaseException) -> BaseException:
    """The step's own error: an activity's cause, or the local activity's failure itself."""
    return (error.cause or error) if isinstance(error, ActivityError) else error


def is_permanent(error: BaseException) -> bool:
    reason = cause_of(error)
    return isinstance(reason, ApplicationError) and reason.non_retryable


def failure_text(error: BaseException) -> str:
    """The most telling message in the failure chain (the activity's own error, or the timeout)."""
    cause = cause_of(error)
    while not _message(cause) and cause.__cause__ is not None:
        cause = cause.__cause__
    return (_message(cause) or type(cause).__name__)[:300]


def _message(error: BaseException) -> str:
    # A failure's str() leads with its type ("PaymentRejected: ..."): for logs, not for the people who read this.
    return error.message if isinstance(error, FailureError) else str(error)
