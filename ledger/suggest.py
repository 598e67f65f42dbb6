"""'Did you mean ...?': the names closest to one that was not found (a registry's catalog for a collect
target, the ledger's own names for a read). Pure: the callers bring the names."""

import difflib

_SHOWN = 3
_CUTOFF = 0.6  # difflib's ratio; below it a name is not offered (a guess that far off misleads)
_MARGIN = 0.1  # and a name much less like it than the best is not offered beside it


def closest(name, candidates, n=_SHOWN):
    """The names most like `name`, best first; none when none is close."""
    found = difflib.get_close_matches(name, sorted(set(candidates) - {name}), n=n, cutoff=_CUTOFF)
    ratios = [difflib.SequenceMatcher(None, name, match).ratio() for match in found]
    return [match for match, ratio in zip(found, ratios) if ratio >= ratios[0] - _MARGIN]


def did_you_mean(names):
    """'; did you mean A or B?' for the names, '' for none: appended to the message that says what is missing."""
    if not names:
        return ""
    return f"; did you mean {' or '.join(names)}?"
