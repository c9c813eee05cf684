"""Every --help of the gateway and its simulators: examples as written, and each option's
default that says something."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Like argparse's ArgumentDefaultsHelpFormatter, but quiet for a default of
    nothing (None, False, "", []), which would only read as noise."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        quiet = default is None or default is False or default is argparse.SUPPRESS
        quiet = quiet or (isinstance(default, str | list) and not default)  # 0 is said
        if "%(default)" in text or quiet or action.option_strings == []:
            return text
        return f"{text} (default: %(default)s)"
