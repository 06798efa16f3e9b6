"""click's own texts that a user of `campaign` reads, so that extraction puts them in our catalog.

click looks them up through gettext at run time (mailer.i18n routes those look-ups to our
catalog); the msgids must be click's exactly. This function is never called: it exists so that
`pybabel extract` and the catalog test see these texts, and a missing translation fails the test.
"""

from .i18n import _, ngettext


def _click_texts() -> None:  # pragma: no cover - read by the extractor, never run
    _("Usage:")
    _("Options")
    _("Commands")
    _("Show this message and exit.")
    _("Show the version and exit.")
    _("%(prog)s, version %(version)s")
    _("Error: {message}")
    _("Try '{command} {option}' for help.")
    _("Invalid value: {message}")
    _("Invalid value for {param_hint}: {message}")
    _("Missing argument")
    _("Missing option")
    _("Missing parameter")
    _("Missing {param_type}")
    _("Missing parameter: {param_name}")
    _("Missing command.")
    _("No such option {name!r}.")
    _("No such command {name!r}.")
    ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", 1)
    ngettext("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", 1)
    _("Option {name!r} does not take a value.")
    ngettext("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments.", 1)
    ngettext("{value!r} is not {choice}.", "{value!r} is not one of {choices}.", 1)
    ngettext("{value!r} does not match the format {format}.", "{value!r} does not match the formats {formats}.", 1)
    _("{value!r} is not a valid {number_type}.")
    _("{value} is not in the range {range}.")
    _("file")
    _("directory")
    _("path")
    _("{name} {filename!r} does not exist.")
    _("{name} {filename!r} is a file.")
    _("{name} {filename!r} is a directory.")
    _("{name} {filename!r} is not readable.")
    _("default: {default}")
    _("env var: {var}")
    _("Aborted!")
    _("Error: invalid input")
    _("Do you want to continue?")


def _metavars() -> None:  # pragma: no cover - read by the extractor, never run
    """The placeholders in usage and help (cli._translate_metavars); the msgids are the English words."""
    _("[OPTIONS]")
    _("COMMAND [ARGS]...")
    _("DIRECTORY")
    _("FILE")
    _("PATH")
    _("TEXT")
    _("INTEGER")
    _("INTEGER RANGE")
    _("NAME")
    _("EMAIL")
    _("EMAILS")
    _("ADDR")
    _("BASE")
    _("WHEN")
