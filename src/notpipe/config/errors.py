"""The one error of the configuration (every problem of a config, one line each)."""


class ConfigError(ValueError):
    """Invalid configuration; the message lists every problem found."""

    one_line = True  # stage.entry prints it without a traceback on the command line
