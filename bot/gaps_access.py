"""Which articles a gaps viewer may see: the hook between the gaps report and the audience rules (issue 13).

Until articles carry audiences every article is readable by every employee, so reviewers see everything
(None); the digest, posted to a channel, is limited the same way the answers in that channel are.
"""

from __future__ import annotations

from retrieval.gaps import ArticleFilter


def reviewer_visibility(services: object, user_id: str) -> ArticleFilter | None:
    """The article filter for one App Home viewer; None: no audience rules apply."""
    return None


def channel_visibility(services: object, channel: str) -> ArticleFilter | None:
    """The article filter for a channel's members (the weekly digest); None: no audience rules apply."""
    return None
