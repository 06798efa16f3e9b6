"""Every exception the engine raises. The CLI maps them to click errors (exit 1)."""

from __future__ import annotations

from collections.abc import Sequence


class CampaignError(Exception):
    """Base of all engine errors; ``str()`` is a sentence a user can act on."""


class SettingsError(CampaignError):
    """A settings file (campaign or deployment) is missing, unreadable or wrong."""


class ContentError(CampaignError):
    """A content file or template cannot be read or rendered."""


class RenderError(ContentError):
    """Jinja, MJML or the CSS inliner failed on a template."""


class PersonaliseError(CampaignError):
    """A contact lacks a field that a template uses."""


class HeaderError(CampaignError):
    """A header value would break the message (line breaks, control characters)."""


class ContactsError(CampaignError):
    """A contact file has problems; ``problems`` lists each as ``FILE:LINE: column 'x': reason``."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(self.problems)


class UnknownContact(CampaignError):
    """No contact with that address."""


class InvalidAddress(CampaignError):
    """A mail address that cannot be stored, compared or sent to; ``str()`` says why."""


class PlanError(CampaignError):
    """The send plan cannot be made or stored as asked."""


class StateError(CampaignError):
    """The stored state does not allow this action now (nothing scheduled, already running...)."""


class DeliveryError(CampaignError):
    """A transport cannot be set up or refused a message in a way that stops the run."""


class SenderNotConfigured(DeliveryError):
    """The deployment settings still hold example values and the action needs a real sender."""


class OutputError(CampaignError):
    """An output file or folder cannot be written, or holds something that is not ours to replace."""


class MailServerConfigError(DeliveryError):
    """The mail server refused the login or the submission because of how the account, the tenant
    or ``campaign`` is set up (Exchange's 5.7.30/5.7.139, 535): no message is to blame, so none is
    failed or bounced; ``str()`` says what to change."""


class TokenError(DeliveryError):
    """No OAuth2 access token could be had (a token command failed, the token endpoint refused the
    grant). ``temporary`` marks a token endpoint that could not be reached: try again later."""

    def __init__(self, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


class ChecklistError(CampaignError):
    """A checklist document cannot be read, or no themes are found in it."""


class MailboxError(CampaignError):
    """A mailbox to read (IMAP, Maildir, mbox or a folder of .eml files) cannot be opened or read."""
