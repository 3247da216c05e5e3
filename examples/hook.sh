#!/bin/sh
# Example upgrade hook: logs what it would do. A real hook pulls $STAGGER_IMAGE and restarts the
# service, and exits non-zero if that fails so that stagger retries it.
echo "upgrading $STAGGER_SERVICE from ${STAGGER_PREVIOUS_TAG:-nothing} to $STAGGER_TAG ($STAGGER_URGENCY, reason $STAGGER_REASON): image $STAGGER_IMAGE"
