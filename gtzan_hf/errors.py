"""The one error class for what a user can fix, which every layer may raise (this module imports nothing)."""


class UserError(ValueError):
    """
    A mistake the user can fix: a path, a file, a flag, a setting, a dataset, a model, the Hub offline. Its message is
    one line saying what was found, what was expected and what to do; the commands report it as an `error:` line,
    without a traceback ([`gtzan_hf.commands.cli.run`]). Anything else they meet is a fault and keeps its traceback.
    Errors of other libraries that are the user's (a missing file on the Hub, a YAML syntax error, weights refused by
    torch's safe loader, a bad flag) are raised as this where they are caught. A `ValueError`, as the model files'
    own refusals are (they travel to the Hub and import nothing of the package), so that code catching those catches
    it too.
    """
