"""The one exception type for errors a user can cause (bad config, data or submission)."""


class NeuronbenchError(Exception):
    """A problem with user input; the message names the file, line or key and what to do."""
