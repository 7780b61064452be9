"""Notifications: outbox, routing, Apprise delivery, templates."""

import warnings

# Apprise's e-mail plugin (loaded lazily, on the first mailto:// URL) imports the stdlib
# ``imghdr``, deprecated since Python 3.11; import it once here, quietly, so that the warning
# does not surface in the middle of a delivery (nor fail a test run with warnings as errors).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import imghdr  # noqa: F401
    except ImportError:  # Python 3.13+: gone, and Apprise ships its own shim
        pass
