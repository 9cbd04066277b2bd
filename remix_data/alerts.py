"""The warning category of remix_data.

:class:`RemixWarning` marks wiring that still runs but probably trains something
other than intended (an epoch iterated again without ``set_epoch``, an epoch
counter going backwards), and, at save time, a filter state under
``torch.distributed`` that holds this rank's unsynced scores alone
(``state_dict(gather=False)``, or a Lightning checkpoint written after an
exception), so that loading it on every rank would not resume exactly. Turn it
into an error in a test suite with ``warnings.simplefilter("error",
RemixWarning)`` or pytest's ``-W error::remix_data.RemixWarning``.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("example", RemixWarning)
    >>> caught[0].category.__name__
    'RemixWarning'
"""

from __future__ import annotations

__all__ = ["RemixWarning"]


class RemixWarning(UserWarning):
    """A remix_data integration runs, but probably not as intended."""
